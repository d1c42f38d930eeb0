"""The gRPC front end (aigc.v1): servicers that only convert, the status rendering, and the
interceptors (API keys, tolerant decoding)."""
