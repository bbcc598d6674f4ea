"""The model cache: layout, keys, locks, atomic install, manifests, verify, prune.

On disk (the root is :func:`savedhub.config.cache_dir`)::

    <root>/
      CACHEDIR.TAG                      marks the folder as a cache for backup tools
      <sha1>/                           one model, named by the SHA-1 of the handle,
                                        exactly as tensorflow_hub names it
      <sha1>.descriptor.txt             "Module: <handle>" note (tensorflow_hub's format)
      <sha1>.savedhub.json              manifest: handle, URL, ETag, archive SHA-256,
                                        every file's size, SHA-256 and mtime_ns as
                                        installed; the manifest's own mtime = last use
      <sha1>.savedhub.lock              per-entry flock, held while fetching or removing
      <sha1>.savedhub.owner             who holds that lock: pid, host, start time
      <sha1>.lock                       tensorflow_hub's lock file (honoured, and written
                                        while we install so tensorflow_hub waits for us)
      <sha1>.<uuid>.tmp/                tensorflow_hub's own work folders
      .savedhub-work/
        <sha1>.<host>.<pid>.<rand>/     a model being extracted by one process
        <sha1>.partial[.json]           the archive received so far, to resume from
        trash.<sha1>.<rand>/            an entry being deleted

Rules (see DESIGN.md "The cache"):

* Readers take no lock. An entry counts only when its folder exists and every
  file in its manifest is there with the right size and its bytes unchanged
  (a file whose mtime moved is re-hashed; see ``_content``); the folder
  appears by one ``rename`` of a fully written work folder, so no reader sees
  half a model.
* Correctness does not depend on the lock: it only makes N processes that
  want the same handle share one download. A killed holder's ``flock`` is
  released by the kernel, so the next process takes over at once.
* A folder without a manifest was written by ``tensorflow_hub``; it is used
  as is when it looks whole (a graph file, every variables shard), and a
  manifest is then written for it.
* A damaged entry (a file deleted by a ``/tmp`` cleaner, a truncated shard,
  a byte changed by an editor) is fetched again with a
  :class:`~savedhub.errors.CacheWarning`. :func:`verify_entries` re-hashes
  every file, for what keeps size and time (bit rot).

Modules, each importing only those above it:

* ``_disk``: atomic small writes, quiet deletes, listing a model's files.
* ``_content``: per-file SHA-256 and mtime in the manifest, and checking them.
* ``_layout``: keys, the paths of an entry's files, whether an entry is whole.
* ``_locks``: the per-entry flock and tensorflow_hub's ``.lock`` files.
* ``_store``: :class:`Cache`, finding a whole entry and installing a missing one.
* ``_maintenance``: list, verify, rehash, remove, prune, reap leftovers.

Example:
    >>> for entry in list_entries():
    ...     print(entry.handle, entry.size, entry.state.value)
    >>> prune(max_size=10 * 2**30, dry_run=True).freed_bytes
"""

from savedhub.cache._layout import EntryState, keys_for
from savedhub.cache._maintenance import (
    CacheEntry,
    PruneReport,
    list_entries,
    parse_size,
    prune,
    rehash,
    remove,
    remove_all,
    verify_entries,
)
from savedhub.cache._store import Cache, Installed

__all__ = [
    "Cache",
    "CacheEntry",
    "EntryState",
    "Installed",
    "PruneReport",
    "keys_for",
    "list_entries",
    "parse_size",
    "prune",
    "rehash",
    "remove",
    "remove_all",
    "verify_entries",
]
