"""Sans-IO SIP: message layer, digest authentication, registrar and edge policy."""
