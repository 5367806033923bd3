//! Clients of the coordinator. They reach it only through the HTTP API — the embedded
//! archivist too, over loopback — so the standalone and embedded workers are one code.

pub mod archivist;
