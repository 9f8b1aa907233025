//! Reading events back for investigators.
