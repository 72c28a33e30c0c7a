"""The audit log's format: the hash chain shared by the writer (`retention run`)
and the verifier (`retention audit verify`)."""
