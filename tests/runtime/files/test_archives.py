"""pack_dir and safe_extract on real files, with crafted malicious tarballs: every refusal
is checked to have written nothing outside the target."""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from farmhand.client.transfer import sha256_file
from farmhand.runtime.files import archives
from farmhand.runtime.files.archives import ArchiveError, pack_dir
from farmhand.runtime.files.extract import safe_extract


def tree(root: Path, skip: Path | None = None) -> dict[str, object]:
    """Every path under `root` (not following links) with what it holds."""
    found: dict[str, object] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if skip is not None and (here == skip or skip in here.parents):
            dirnames.clear()
            continue
        for name in dirnames + filenames:
            path = here / name
            if skip is not None and path == skip:
                continue
            rel = str(path.relative_to(root))
            if path.is_symlink():
                found[rel] = ("link", os.readlink(path))
            elif path.is_file():
                found[rel] = ("file", path.read_bytes())
            else:
                found[rel] = ("dir",)
    return found


class Box:
    """A target directory beside an `outside` directory holding a precious file."""

    def __init__(self, tmp_path: Path):
        self.root = tmp_path / "box"
        self.tarballs = tmp_path / "tarballs"
        self.tarballs.mkdir()
        root = self.root
        self.target = root / "run" / "target"
        self.target.mkdir(parents=True)
        self.outside = root / "outside"
        self.outside.mkdir()
        (self.outside / "precious").write_text("keep me")
        self.before = tree(root, skip=self.target)

    def untouched(self) -> bool:
        """Nothing outside the target was created, changed or removed."""
        return tree(self.root, skip=self.target) == self.before

    def tarball(self, *members: tuple[tarfile.TarInfo, bytes | None], **options: object) -> Path:
        path = self.tarballs / f"crafted-{len(list(self.tarballs.iterdir()))}.tar.gz"
        with tarfile.open(path, "w:gz", **options) as tar:  # type: ignore[call-overload]
            for info, data in members:
                tar.addfile(info, io.BytesIO(data) if data is not None else None)
        return path

    def refuses(self, tarball: Path, match: str, **caps: int) -> None:
        with pytest.raises(ArchiveError, match=match):
            safe_extract(tarball, self.target, **caps)
        assert self.untouched()


@pytest.fixture(params=["own checks only", "with tarfile.data_filter"])
def box(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Box:
    """A Box; every refusal is tried without Python's data filter too (3.10 lacks it)."""
    if request.param == "own checks only":
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    elif not hasattr(tarfile, "data_filter"):
        pytest.skip("this Python has no tarfile.data_filter")
    return Box(tmp_path)


def file(name: str, data: bytes = b"x", mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    return info, data


def entry(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    return info, None


# --- packing and a clean round trip ----------------------------------------------------------


def make_run(root: Path) -> Path:
    run = root / "run-dir"
    (run / "sub" / "deep").mkdir(parents=True)
    (run / "empty").mkdir()
    (run / "results.json").write_text('{"e": 1}')
    (run / "stdout.txt").write_text("hello\n")
    (run / "sub" / "deep" / "data.bin").write_bytes(os.urandom(3000))
    (run / "scratch.tmp").write_text("junk")
    (run / "sub" / "x.tmp").write_text("junk")
    (run / "cache").mkdir()
    (run / "cache" / "big").write_text("junk")
    os.symlink("sub/deep/data.bin", run / "link")
    os.symlink("/etc/passwd", run / "absolute-link")  # stored as a link, never followed
    os.link(run / "stdout.txt", run / "stdout-again.txt")
    os.mkfifo(run / "fifo")
    os.chmod(run / "results.json", 0o4755)  # setuid: dropped on extraction
    return run


def test_pack_and_extract_round_trip(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    tarball = tmp_path / "run.tar.gz"
    sha = pack_dir(run, tarball, exclude=["*.tmp", "cache"])
    assert sha == sha256_file(tarball)
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
        kinds = {m.name: m.type for m in tar.getmembers()}
    assert names == sorted(names, key=lambda n: n.split("/"))  # sorted, dirs first
    assert all(not n.startswith(("/", "./")) for n in names)
    assert "fifo" not in names and "scratch.tmp" not in names and "sub/x.tmp" not in names
    assert "cache" not in names and "cache/big" not in names
    assert kinds["link"] == tarfile.SYMTYPE and kinds["stdout.txt"] == tarfile.LNKTYPE  # 2nd name

    out = tmp_path / "out"
    # The absolute link is refused on the way in; pack without it for the round trip.
    os.unlink(run / "absolute-link")
    pack_dir(run, tarball, exclude=["*.tmp", "cache"])
    done = safe_extract(tarball, out)
    assert done.bytes == 8 + 6 + 3000
    assert (out / "results.json").read_text() == '{"e": 1}'
    assert stat.S_IMODE((out / "results.json").stat().st_mode) == 0o755
    assert (out / "sub" / "deep" / "data.bin").read_bytes() == (
        run / "sub" / "deep" / "data.bin"
    ).read_bytes()
    assert os.readlink(out / "link") == "sub/deep/data.bin"
    assert (out / "link").read_bytes() == (run / "sub" / "deep" / "data.bin").read_bytes()
    assert os.stat(out / "stdout-again.txt").st_ino == os.stat(out / "stdout.txt").st_ino
    assert (out / "empty").is_dir()
    assert not (out / "fifo").exists()


def test_the_same_tree_packs_to_the_same_snapshot(tmp_path: Path) -> None:
    run = tmp_path / "d"
    run.mkdir()
    (run / "a").write_text("1")
    first = pack_dir(run, tmp_path / "one.tar.gz")
    second = pack_dir(run, tmp_path / "two.tar.gz")
    assert first == second
    (run / "a").write_text("2")
    assert pack_dir(run, tmp_path / "three.tar.gz") != first


def test_skip_leaves_out_what_it_names(tmp_path: Path) -> None:
    run = tmp_path / "d"
    (run / "parents" / "p").mkdir(parents=True)
    (run / "parents" / "p" / "results.json").write_text("{}")
    (run / "input.dat").write_text("in")
    (run / "output.dat").write_text("out")
    pack_dir(
        run,
        tmp_path / "a.tar.gz",
        skip=lambda rel, info: rel in ("parents", "input.dat"),
    )
    with tarfile.open(tmp_path / "a.tar.gz") as tar:
        assert tar.getnames() == ["output.dat"]


# --- refusals ----------------------------------------------------------------------------------


def test_absolute_names_are_refused(box: Box) -> None:
    target = str(box.outside / "pwned")
    box.refuses(box.tarball(file(target)), "absolute path")


@pytest.mark.parametrize("name", ["../outside/pwned", "a/../../outside/pwned", "a/b/../../.."])
def test_dotdot_names_are_refused(box: Box, name: str) -> None:
    box.refuses(box.tarball(file("ok"), file(name)), r"'\.\.' part")


@pytest.mark.parametrize(
    "name, linkname, why",
    [
        ("l", "/etc", "absolute path"),
        ("l", str(Path("..") / ".." / "outside"), "outside"),
        ("a/l", "../../outside/precious", "outside"),
        ("l", "..", "outside"),
        ("l", "a/../..", "after a name"),
    ],
)
def test_symlinks_pointing_outside_are_refused(
    box: Box, name: str, linkname: str, why: str
) -> None:
    members = [entry("a", tarfile.DIRTYPE), entry(name, tarfile.SYMTYPE, linkname)]
    box.refuses(box.tarball(*members), why)
    assert not os.path.lexists(box.target / name)


def test_a_link_chain_through_a_dot_link_is_refused(box: Box) -> None:
    # "s" -> "." is harmless, but "s/../x" from the root would mean the target's parent:
    # written text alone cannot tell, so a '..' after a name is refused.
    crafted = box.tarball(
        entry("s", tarfile.SYMTYPE, "."),
        entry("l", tarfile.SYMTYPE, "s/../outside/precious"),
        file("l", b"pwned"),
    )
    box.refuses(crafted, "after a name")
    assert (box.outside / "precious").read_text() == "keep me"


def test_a_file_through_an_archived_symlink_is_refused(box: Box) -> None:
    # The classic: a symlink first, then a file whose name goes through it.
    crafted = box.tarball(
        entry("sub", tarfile.DIRTYPE),
        entry("l", tarfile.SYMTYPE, "sub"),  # pointing inside: allowed by itself
        file("l/pwned", b"x"),
    )
    box.refuses(crafted, "passes through a symlink")
    assert not (box.target / "sub" / "pwned").exists()


def test_a_file_through_an_existing_symlink_in_the_target_is_refused(box: Box) -> None:
    os.symlink(box.outside, box.target / "escape")
    box.refuses(box.tarball(file("escape/pwned", b"x")), "passes through a symlink")
    box.refuses(
        box.tarball(entry("escape", tarfile.DIRTYPE), file("escape/pwned")), "replace a file"
    )


def test_a_symlink_replacing_an_existing_file_or_link_is_refused(box: Box) -> None:
    crafted = box.tarball(file("f", b"1"), entry("f", tarfile.SYMTYPE, "g"))
    box.refuses(crafted, "would replace")
    crafted = box.tarball(entry("l", tarfile.SYMTYPE, "x"), file("l", b"pwned"))
    box.refuses(crafted, "would replace")


@pytest.mark.parametrize(
    "linkname, why",
    [
        ("/etc/passwd", "absolute path"),
        ("../outside/precious", r"'\.\.' part"),
        ("escape/precious", "not to a regular file"),  # through a link to outside
        ("inside-link", "not to a regular file"),  # to a symlink
        ("missing", "not to a regular file"),
    ],
)
def test_hard_links_outside_or_to_links_are_refused(box: Box, linkname: str, why: str) -> None:
    os.symlink(box.outside, box.target / "escape")
    crafted = box.tarball(
        file("f", b"1"),
        entry("inside-link", tarfile.SYMTYPE, "f"),
        entry("h", tarfile.LNKTYPE, linkname),
        file("h", b"pwned"),  # would write through the link if it were made
    )
    box.refuses(crafted, why)
    assert (box.outside / "precious").read_text() == "keep me"
    assert os.stat(box.outside / "precious").st_nlink == 1


def test_an_existing_hard_link_is_replaced_never_written_through(box: Box) -> None:
    os.link(box.outside / "precious", box.target / "victim")  # e.g. a staged input
    safe_extract(box.tarball(file("victim", b"new contents")), box.target)
    assert (box.target / "victim").read_bytes() == b"new contents"
    assert (box.outside / "precious").read_text() == "keep me"


@pytest.mark.parametrize("kind", [tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE])
def test_devices_and_fifos_are_refused(box: Box, kind: bytes) -> None:
    info, _ = entry("dev", kind)
    info.devmajor, info.devminor = 1, 3
    box.refuses(box.tarball((info, None)), "device|special")
    assert not os.path.lexists(box.target / "dev")


def test_too_many_members_are_refused(box: Box) -> None:
    crafted = box.tarball(*(file(f"f{i}") for i in range(6)))
    box.refuses(crafted, "more than 5 members", max_files=5)
    assert len(list(box.target.iterdir())) <= 5
    assert safe_extract(crafted, box.tarballs / "big-enough", max_files=6).files == 6


def test_too_many_bytes_are_refused_before_they_are_written(box: Box) -> None:
    crafted = box.tarball(file("a", b"1" * 600), file("b", b"2" * 600))
    box.refuses(crafted, "past 1000 bytes", max_bytes=1000)
    assert not (box.target / "b").exists()


def test_a_gzip_bomb_is_refused_by_its_declared_size(box: Box) -> None:
    zeros = bytes(64 * 1024 * 1024)  # compresses to ~64 KiB
    crafted = box.tarball(file("bomb", zeros))
    assert crafted.stat().st_size < 1024 * 1024
    box.refuses(crafted, "past 1048576 bytes", max_bytes=1024 * 1024)
    assert not (box.target / "bomb").exists()


def test_a_huge_pax_header_is_refused_before_it_is_read_into_memory(box: Box) -> None:
    info, data = file("f")
    info.pax_headers = {"comment": "x" * (20 * 1024 * 1024)}
    crafted = box.tarball((info, data), format=tarfile.PAX_FORMAT)
    box.refuses(crafted, "header block")


def test_decompressed_data_beyond_what_the_members_explain_is_refused(box: Box) -> None:
    # A 1 MiB GNU long name under the 16 MiB header cap, yet far more than one small
    # member's allowance: tarfile would read it whole into memory, so the reader stops it.
    info, data = file("d/" + "n" * (1024 * 1024))
    crafted = box.tarball((info, data), format=tarfile.GNU_FORMAT)
    box.refuses(crafted, "once decompressed", max_bytes=10, max_files=1)


def test_a_file_that_is_no_tar_gz_is_refused(box: Box) -> None:
    bad = box.tarballs / "bad.tar.gz"
    bad.write_bytes(b"not gzip at all")
    box.refuses(bad, "not a readable tar.gz")
    plain = box.tarballs / "plain.gz"
    with gzip.open(plain, "wb") as gz:
        gz.write(b"gzip, but no tar inside" * 100)
    box.refuses(plain, "not a readable tar.gz")


def test_a_directory_is_never_replaced(box: Box) -> None:
    crafted = box.tarball(entry("d", tarfile.DIRTYPE), file("d", b"x"))
    box.refuses(crafted, "replace a directory")
    assert (box.target / "d").is_dir()


def test_read_only_directories_in_an_archive_still_extract(box: Box) -> None:
    info, _ = entry("ro", tarfile.DIRTYPE)
    info.mode = 0o555
    done = safe_extract(box.tarball((info, None), file("ro/inside", b"1")), box.target)
    assert done.files == 2
    assert (box.target / "ro" / "inside").read_bytes() == b"1"
    assert stat.S_IMODE((box.target / "ro").stat().st_mode) & 0o700 == 0o700


@pytest.mark.parametrize(
    "name, kind, size, linkname",
    [
        ("results.json", tarfile.REGTYPE, 1234, ""),
        ("sub/deep", tarfile.DIRTYPE, 0, ""),
        ("link", tarfile.SYMTYPE, 0, "sub/deep/data.bin"),
        ("again.txt", tarfile.LNKTYPE, 0, "stdout.txt"),
        ("x" * 100, tarfile.REGTYPE, 8**11 - 1, ""),
    ],
)
def test_the_fast_ustar_header_is_what_tarfile_writes(
    name: str, kind: bytes, size: int, linkname: str
) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname = kind, size, linkname
    info.mode, info.uid, info.gid, info.mtime = 0o4755, 1000, 100, 1_700_000_000
    info.uname, info.gname = "alice", "physics"
    assert archives._ustar(info) == info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


@pytest.mark.parametrize(
    "change",
    [
        {"name": "y" * 101},  # longer than ustar's name field
        {"name": "résumé.txt"},  # not ASCII
        {"linkname": "z" * 101},
        {"size": 8**11},  # over 8 GiB
        {"uid": 8**7},
        {"uname": "u" * 33},
    ],
)
def test_members_ustar_cannot_hold_go_through_tarfiles_pax_records(change: dict) -> None:
    info = tarfile.TarInfo("plain")
    for key, value in change.items():
        setattr(info, key, value)
    assert archives._ustar(info) is None


def test_long_and_non_ascii_names_round_trip(tmp_path: Path) -> None:
    run = tmp_path / "d"
    deep = run / ("long-directory-name-" * 4) / ("and-a-longer-file-name-" * 4)
    deep.parent.mkdir(parents=True)
    deep.write_text("deep")
    (run / "résumé.txt").write_text("accents")
    os.utime(run / "résumé.txt", (1_700_000_000.75, 1_700_000_000.75))
    pack_dir(run, tmp_path / "a.tar.gz")
    out = tmp_path / "out"
    safe_extract(tmp_path / "a.tar.gz", out)
    assert (out / deep.relative_to(run)).read_text() == "deep"
    assert (out / "résumé.txt").read_text() == "accents"
    assert (out / "résumé.txt").stat().st_mtime == 1_700_000_000  # whole seconds
