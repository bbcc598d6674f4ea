"""Small I/O building blocks shared by the client, the publisher and the server.

``atomic`` writes a file or puts a folder in place in one rename; ``pipe`` is a
bounded, cancellable byte pipe between threads; ``units`` writes and reads
byte sizes and durations; ``tarlimits`` checks a tar stream's headers against
size, member and name limits before ``tarfile`` reads them; ``digest`` is the
SHA-256 of cached files, taken while they are extracted or read back.
"""
