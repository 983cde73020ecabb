"""Shared-memory segments: created once by their owner, attached by everyone else.

Every segment is reachable at ``/dev/shm/<layout name>-<segment name>``:
- backing ``4k``: a plain POSIX shared-memory file there;
- backing ``hugepage``: a file on a mounted hugetlbfs, or else a memfd created
  with MFD_HUGETLB, and ``/dev/shm/...`` is a symlink to it (for a memfd, to
  ``/proc/<owner pid>/fd/<fd>``, which re-opens the same memory). When huge
  pages cannot be had (none reserved: the ENOMEM comes at ``mmap``), the owner
  falls back to 4 KiB pages, logs a warning saying why, and records the backing
  in the header (and the supervisor in a counter).

We map segments ourselves with ``mmap``: ``multiprocessing.shared_memory``
registers them with a resource tracker that unlinks them when any attached
process exits. Only the owner (``Segment.create``) ever unlinks.

The first page is a header: magic, layout version, layout hash, creator pid,
creation time, backing, size, and the canonical layout itself, so that a
process with a different layout is refused with the fields that differ. The
magic is stored last (release), so a half-built segment is never attached.
"""
from __future__ import annotations

import errno
import logging
import mmap
import os
import struct
import time
from dataclasses import dataclass

from appliance.runtime import _shm
from appliance.runtime.layout import HUGE_PAGE_SIZE, SEGMENT_HEADER_SIZE, Layout, SegmentSpec, describe_difference

log = logging.getLogger(__name__)

SHM_DIR = "/dev/shm"
MAGIC = int.from_bytes(b"APPLSEG1", "little")
HEADER_VERSION = 1
MFD_HUGETLB = 0x0004          # linux/memfd.h
MAP_HUGETLB = 0x40000         # not exported by Python's mmap module (x86-64 value)

BACKING_HUGETLBFS = 1
BACKING_MEMFD_HUGETLB = 2
BACKING_4K = 3
BACKING_NAMES = {BACKING_HUGETLBFS: "hugepage (hugetlbfs)", BACKING_MEMFD_HUGETLB: "hugepage (memfd)",
                 BACKING_4K: "4k (/dev/shm)"}

# magic is at offset 0 and written last; everything else is plain header data.
_HEADER = struct.Struct("<QII32sQQIIQQQ32s")
_MAGIC_OFFSET = 0


@dataclass(frozen=True)
class SegmentHeader:
    magic: int
    header_version: int
    layout_version: int
    layout_hash: bytes
    creator_pid: int
    created_ns: int
    backing: int
    page_size: int
    size: int
    canonical_offset: int
    canonical_len: int
    name: str

    @classmethod
    def read(cls, buffer) -> "SegmentHeader":
        fields = list(_HEADER.unpack_from(buffer, 0))
        fields[-1] = fields[-1].rstrip(b"\0").decode("utf-8", "replace")
        return cls(*fields)


class SegmentError(RuntimeError):
    """A segment that cannot be created or must not be attached; the message says why."""


def segment_path(spec: SegmentSpec) -> str:
    return os.path.join(SHM_DIR, spec.shm_name)


def _hugetlbfs_mount() -> str | None:
    try:
        with open("/proc/mounts") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) >= 3 and parts[2] == "hugetlbfs" and os.access(parts[1], os.W_OK):
                    return parts[1]
    except OSError:
        pass
    return None


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Segment:
    """One mapped segment. ``buffer`` is the mmap (hand it to Ring, Counter, ...)."""

    def __init__(self, spec: SegmentSpec, path: str, mapping: mmap.mmap, backing: int, owner: bool,
                 keep_fd: int | None = None, backing_path: str | None = None, writable: bool = True):
        self.spec = spec
        self.path = path
        self.buffer = mapping
        self.backing = backing
        self.owner = owner
        self._keep_fd = keep_fd              # memfd: must stay open while the owner lives
        self._backing_path = backing_path    # hugetlbfs file behind the /dev/shm symlink
        self.atomics = _shm.AtomicView(mapping, writable)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def header(self) -> SegmentHeader:
        return SegmentHeader.read(self.buffer)

    @property
    def backing_name(self) -> str:
        return BACKING_NAMES.get(self.backing, f"unknown ({self.backing})")

    @property
    def hugepages(self) -> bool:
        return self.backing in (BACKING_HUGETLBFS, BACKING_MEMFD_HUGETLB)

    # ------------------------------------------------------------------ create
    @classmethod
    def create(cls, layout: Layout, spec: SegmentSpec) -> "Segment":
        path = segment_path(spec)
        cls._remove_stale(layout, spec, path)
        mapping, backing, keep_fd, backing_path = None, BACKING_4K, None, None
        if spec.backing == "hugepage":
            mapping, backing, keep_fd, backing_path = cls._map_hugepages(spec, path)
        if mapping is None:
            mapping = cls._map_4k(spec, path)
            backing = BACKING_4K
        try:
            segment = cls(spec, path, mapping, backing, owner=True, keep_fd=keep_fd, backing_path=backing_path)
            segment._write_header(layout)
        except BaseException:
            mapping.close()
            cls._unlink_paths(path, backing_path)
            if keep_fd is not None:
                os.close(keep_fd)
            raise
        log.info("segment %s created at %s: %d bytes, backing %s", spec.name, path, spec.size,
                 BACKING_NAMES[backing])
        return segment

    @staticmethod
    def _map_4k(spec: SegmentSpec, path: str) -> mmap.mmap:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, spec.mode)
        try:
            os.fchmod(fd, spec.mode)          # exact mode, whatever the umask
            os.ftruncate(fd, spec.size)
            return mmap.mmap(fd, spec.size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            os.unlink(path)
            raise
        finally:
            os.close(fd)

    @staticmethod
    def _map_hugepages(spec: SegmentSpec, path: str):
        """Try huge pages; on failure return (None, ...) after logging why."""
        size = spec.size
        assert size % HUGE_PAGE_SIZE == 0
        mount = _hugetlbfs_mount()
        if mount:
            target = os.path.join(mount, spec.shm_name)
            try:
                fd = os.open(target, os.O_RDWR | os.O_CREAT | os.O_EXCL, spec.mode)
            except OSError as exc:
                log.warning("segment %s: cannot create %s on hugetlbfs (%s); falling back to 4 KiB pages",
                            spec.name, target, exc.strerror)
                return None, BACKING_4K, None, None
            try:
                os.fchmod(fd, spec.mode)
                os.ftruncate(fd, size)
                mapping = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
                mapping[0:1] = b"\0"        # touch: a reservation failure shows now, not later
                os.symlink(target, path)
                return mapping, BACKING_HUGETLBFS, None, target
            except OSError as exc:
                os.unlink(target)
                log.warning("segment %s: huge pages unavailable on %s (%s: %s); falling back to 4 KiB pages. "
                            "Reserve them with vm.nr_hugepages (need %d x 2 MiB)", spec.name, mount,
                            errno.errorcode.get(exc.errno, exc.errno), exc.strerror, size // HUGE_PAGE_SIZE)
                return None, BACKING_4K, None, None
            finally:
                os.close(fd)
        try:
            fd = os.memfd_create(spec.shm_name, os.MFD_CLOEXEC | MFD_HUGETLB)
        except OSError as exc:
            log.warning("segment %s: memfd_create(MFD_HUGETLB) failed (%s); falling back to 4 KiB pages",
                        spec.name, exc.strerror)
            return None, BACKING_4K, None, None
        try:
            os.ftruncate(fd, size)
            # No MAP_NORESERVE: with it, a missing reservation is a SIGBUS at first touch.
            mapping = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            os.fchmod(fd, spec.mode)
            os.symlink(f"/proc/{os.getpid()}/fd/{fd}", path)
            return mapping, BACKING_MEMFD_HUGETLB, fd, None
        except OSError as exc:
            os.close(fd)
            log.warning("segment %s: huge pages unavailable (%s at mmap of %d bytes: %s); falling back to 4 KiB "
                        "pages. Reserve them with vm.nr_hugepages (need %d x 2 MiB)", spec.name,
                        errno.errorcode.get(exc.errno, exc.errno), size, exc.strerror, size // HUGE_PAGE_SIZE)
            return None, BACKING_4K, None, None

    @classmethod
    def _remove_stale(cls, layout: Layout, spec: SegmentSpec, path: str) -> None:
        """A segment left by a dead owner is removed; one whose owner lives is refused."""
        if not os.path.lexists(path):
            return
        creator = None
        try:
            with open(path, "rb") as fh:
                raw = fh.read(_HEADER.size)
            if len(raw) == _HEADER.size:
                creator = SegmentHeader.read(raw).creator_pid
        except OSError:
            pass                           # dangling memfd symlink: the owner is gone
        if creator and creator != os.getpid() and _pid_alive(creator):
            raise SegmentError(f"segment {spec.name}: {path} is in use by a live process (pid {creator}); "
                               f"stop that appliance first")
        target = os.path.realpath(path) if os.path.islink(path) else None
        log.warning("segment %s: removing stale %s left by pid %s", spec.name, path, creator or "unknown")
        cls._unlink_paths(path, target if target and not target.startswith("/proc/") else None)

    def _write_header(self, layout: Layout) -> None:
        canonical = layout.canonical
        if SEGMENT_HEADER_SIZE + len(canonical) > self.spec.size:
            raise SegmentError(f"segment {self.spec.name}: layout description does not fit")
        self.buffer[SEGMENT_HEADER_SIZE:SEGMENT_HEADER_SIZE + len(canonical)] = canonical
        page = mmap.PAGESIZE if self.backing == BACKING_4K else HUGE_PAGE_SIZE
        _HEADER.pack_into(self.buffer, 0, 0, HEADER_VERSION, layout.version, layout.hash, os.getpid(),
                          time.time_ns(), self.backing, page, self.spec.size, SEGMENT_HEADER_SIZE, len(canonical),
                          self.spec.shm_name.encode()[:32])
        self.atomics.store(_MAGIC_OFFSET, MAGIC)   # release: the segment is now attachable

    # ------------------------------------------------------------------ attach
    @classmethod
    def attach(cls, layout: Layout, spec: SegmentSpec, *, writable: bool = True) -> "Segment":
        path = segment_path(spec)
        try:
            fd = os.open(path, os.O_RDWR if writable else os.O_RDONLY)
        except FileNotFoundError:
            raise SegmentError(f"segment {spec.name}: {path} does not exist (is the appliance running?)") from None
        except PermissionError:
            raise SegmentError(f"segment {spec.name}: {path}: permission denied (mode is set by the layout)") from None
        try:
            actual = os.fstat(fd).st_size
            if actual < SEGMENT_HEADER_SIZE:
                raise SegmentError(f"segment {spec.name}: {path} is {actual} bytes, too small to be a segment")
            prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
            mapping = mmap.mmap(fd, actual, mmap.MAP_SHARED, prot)
        finally:
            os.close(fd)
        try:
            header = cls._check_header(layout, spec, path, mapping, actual)
        except BaseException:
            mapping.close()
            raise
        return cls(spec, path, mapping, header.backing, owner=False, writable=writable)

    @staticmethod
    def _check_header(layout: Layout, spec: SegmentSpec, path: str, mapping: mmap.mmap, actual: int) -> SegmentHeader:
        """The segment's header, if it was made from this layout; SegmentError naming what differs otherwise."""
        magic = int.from_bytes(mapping[0:8], "little")
        if magic != MAGIC:
            raise SegmentError(f"segment {spec.name}: {path} is not an appliance segment or is still being "
                               f"created (magic {magic:#x})")
        header = SegmentHeader.read(mapping)
        problems = []
        if header.header_version != HEADER_VERSION:
            problems.append(f"header version: segment {header.header_version}, this build {HEADER_VERSION}")
        if header.layout_version != layout.version:
            problems.append(f"layout version: segment {header.layout_version}, {layout.path} {layout.version}")
        if header.layout_hash != layout.hash:
            problems.append(f"layout hash: segment {header.layout_hash.hex()[:16]}, {layout.path} "
                            f"{layout.hash_hex[:16]}")
            end = header.canonical_offset + header.canonical_len
            if header.canonical_offset >= SEGMENT_HEADER_SIZE and end <= actual:
                problems.extend(describe_difference(layout.canonical, bytes(mapping[header.canonical_offset:end])))
        if header.size != spec.size or actual < spec.size:
            problems.append(f"size: segment {header.size} ({actual} mapped), {layout.path} {spec.size}")
        if problems:
            raise SegmentError(f"refusing to attach segment {spec.name} ({path}, created by pid "
                               f"{header.creator_pid}) with {layout.path}: " + "; ".join(problems))
        return header

    # ------------------------------------------------------------------ teardown
    def close(self) -> None:
        """Unmap now, or, while Ring/Counter handles still hold the mapping, when the last one goes."""
        if self.buffer is None:
            return
        self.atomics = None
        try:
            self.buffer.close()
        except BufferError:
            pass        # handles still export it; the mmap unmaps itself when they are released
        self.buffer = None
        if self._keep_fd is not None:
            os.close(self._keep_fd)
            self._keep_fd = None

    def unlink(self) -> None:
        """Remove the name (owner only); memory is freed once every process unmaps it."""
        if not self.owner:
            raise SegmentError(f"segment {self.spec.name}: only its owner removes it")
        self._unlink_paths(self.path, self._backing_path)

    @staticmethod
    def _unlink_paths(path: str, backing_path: str | None) -> None:
        for p in (path, backing_path):
            if p:
                try:
                    os.unlink(p)
                except FileNotFoundError:
                    pass
