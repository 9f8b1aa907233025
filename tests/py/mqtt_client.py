"""paho-mqtt publishing through the gateway's explicit proxy (HTTP CONNECT),
and a subscriber connected straight to the broker recording what it gets.

usage: mqtt_client.py PROXY_HOST:PORT BROKER_NAME BROKER_PORT CA_FILE
                      TRANSPORT(tcp|websockets|plain) LEVEL(4|5|3) SUB_PORT TOPIC
                      PAYLOAD...

Each PAYLOAD is published (QoS 1) on its own connection through the
gateway, in order. Prints one JSON object: what each publish saw (rc of the
PUBACK, disconnect reason) and the payloads the subscriber received.
"""

import json
import socket
import sys
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

# PROXY "-": no proxy (redirected transparently); the subscriber then
# dials BROKER_NAME too.
direct = sys.argv[1] == "-"
proxy_host, proxy_port = ("", "0") if direct else sys.argv[1].rsplit(":", 1)
broker_name, broker_port = sys.argv[2], int(sys.argv[3])
ca_file, transport, level = sys.argv[4], sys.argv[5], int(sys.argv[6])
sub_port, topic, payloads = int(sys.argv[7]), sys.argv[8], sys.argv[9:]

real_create_connection = socket.create_connection


def via_proxy(addr, timeout=None, source_address=None):
    """paho dials the broker by name: tunnel to 127.0.0.1:port instead."""
    s = real_create_connection((proxy_host, int(proxy_port)), timeout=timeout)
    s.sendall(f"CONNECT 127.0.0.1:{addr[1]} HTTP/1.1\r\nHost: 127.0.0.1:{addr[1]}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1)
        if not chunk:
            raise OSError("proxy closed: " + head.decode(errors="replace"))
        head += chunk
    if b" 200" not in head.split(b"\r\n")[0]:
        raise OSError("proxy refused: " + head.decode(errors="replace"))
    return s


protocol = {3: mqtt.MQTTv31, 4: mqtt.MQTTv311, 5: mqtt.MQTTv5}[level]

received = []
sub_ready = threading.Event()


def on_sub_connect(c, userdata, flags, rc, properties=None):
    c.subscribe(topic, qos=1)


def on_subscribe(c, userdata, mid, rcs, properties=None):
    sub_ready.set()


def on_sub_message(c, userdata, msg):
    received.append(msg.payload.decode(errors="replace"))


sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="observer", protocol=protocol)
sub.on_connect = on_sub_connect
sub.on_subscribe = on_subscribe
sub.on_message = on_sub_message
sub.connect(broker_name if direct else "127.0.0.1", sub_port)
sub.loop_start()
assert sub_ready.wait(10), "subscriber did not subscribe"

if not direct:
    socket.create_connection = via_proxy
results = []
for i, payload in enumerate(payloads):
    seen = {"connected": False, "puback": None, "disconnect": []}
    done = threading.Event()

    def on_connect(c, userdata, flags, rc, properties=None):
        seen["connected"] = not rc.is_failure
        c.publish(topic, payload, qos=1)

    def on_publish(c, userdata, mid, rc, properties=None):
        seen["puback"] = str(rc)
        done.set()

    def on_disconnect(c, userdata, flags, rc, properties=None):
        seen["disconnect"].append(str(rc))
        done.set()

    pub = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"sensor-{i}",
        protocol=protocol,
        transport="tcp" if transport == "plain" else transport,
    )
    if transport == "websockets":
        pub.ws_set_options(path="/mqtt")
    if transport != "plain":
        pub.tls_set(ca_certs=ca_file)
    pub.on_connect = on_connect
    pub.on_publish = on_publish
    pub.on_disconnect = on_disconnect
    try:
        pub.connect(broker_name, broker_port)
        pub.loop_start()
        done.wait(10)
        time.sleep(0.3)  # a DISCONNECT after a PUBACK
        pub.loop_stop()
        pub.disconnect()
    except Exception as e:  # noqa: BLE001 - reported to the test
        seen["error"] = repr(e)
    results.append(seen)

time.sleep(1.0)
sub.loop_stop()
print(json.dumps({"publishes": results, "received": received}))
