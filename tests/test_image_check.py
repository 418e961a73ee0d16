"""Training's image check: the index of verdicts keyed by size and modification time (`find_unreadable`), and the
steps that the processes under torchrun compose (`ImageCheck`, `read_index`, `write_index`)."""

import os

from conftest import write_image_folder
from PIL import Image

from vggnet.data import find_unreadable


def test_the_scan_index_decodes_only_what_is_new_or_changed(tmp_path, monkeypatch):
    from vggnet.data import decode

    paths = sorted(write_image_folder(tmp_path / "data", per_class=2, split=False).rglob("*.png"))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    paths.append(bad)
    decoded, real = [], decode.load_rgb
    monkeypatch.setattr(decode, "load_rgb", lambda path, min_size=None: decoded.append(path) or real(path, min_size))
    index = tmp_path / "index.json"

    first = find_unreadable(paths, index=index)
    assert [error.path for error in first] == [str(bad)] and sorted(decoded) == sorted(paths)
    decoded.clear()
    again = find_unreadable(paths, index=index)  # nothing changed: every verdict from the index
    assert decoded == [] and [(e.path, e.reason) for e in again] == [(e.path, e.reason) for e in first]

    Image.new("RGB", (9, 9), "teal").save(bad)  # repaired: a new size
    os.utime(paths[0], ns=(paths[0].stat().st_atime_ns, paths[0].stat().st_mtime_ns + 10**9))  # touched
    added = tmp_path / "added.png"
    Image.new("RGB", (9, 9), "navy").save(added)
    decoded.clear()
    assert find_unreadable([*paths, added], index=index) == []
    assert sorted(decoded) == sorted([paths[0], bad, added])  # no stale verdict trusted

    index.write_text("{damaged")  # an index that cannot be read is rebuilt, never trusted
    decoded.clear()
    assert find_unreadable(paths, index=index) == [] and sorted(decoded) == sorted(paths)


def test_an_image_check_decodes_only_what_the_index_does_not_vouch_for(tmp_path):
    from vggnet.data.decode import ImageCheck, read_index, unreadable_errors, write_index

    good = sorted(write_image_folder(tmp_path / "data", per_class=2, split=False).rglob("*.png"))
    bad, missing = tmp_path / "bad.png", tmp_path / "gone.png"
    bad.write_bytes(b"not an image")
    paths = [good[0], bad, missing, *good[1:]]
    check = ImageCheck(paths, read_index(tmp_path / "none.json"))  # no index yet: every file is to be decoded
    assert check.pending == len(paths)
    records = check.run(workers=2)
    assert check.pending == 0
    for path in good:
        stat = os.stat(path)
        assert records[paths.index(path)] == [stat.st_size, stat.st_mtime_ns, None]
    assert records[1][:2] == [bad.stat().st_size, bad.stat().st_mtime_ns] and records[1][2]
    assert records[2] == [None, None, "no such file"]
    errors = unreadable_errors(paths, records)
    assert [(e.path, e.reason) for e in errors] == [(str(bad), records[1][2]), (str(missing), "no such file")]

    index = tmp_path / "scans" / "index.json"
    write_index(index, paths, records)
    assert sorted(read_index(index)) == sorted(str(path) for path in paths if path != missing)
    again = ImageCheck(paths, read_index(index))
    assert again.pending == 1  # only the missing file, which no record vouches for, is looked for again
    assert again.records[0] == records[0] and again.records[1] == records[1]


def test_image_checks_of_shares_make_the_check_of_the_whole(tmp_path):
    """What a process checks of its share (every second file) is what one check of all the files finds."""
    from vggnet.data.decode import ImageCheck

    paths = sorted(write_image_folder(tmp_path / "data", per_class=2, split=False).rglob("*.png"))
    (tmp_path / "data" / "ant" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    paths.insert(3, tmp_path / "data" / "ant" / "broken.png")
    whole = ImageCheck(paths, {}).run(workers=1)
    combined = [None] * len(paths)
    combined[0::2], combined[1::2] = ImageCheck(paths[0::2], {}).run(), ImageCheck(paths[1::2], {}).run()
    assert combined == whole and whole[3][2]
