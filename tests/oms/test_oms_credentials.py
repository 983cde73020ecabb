"""The venue login comes from a private credentials file (or systemd's copy of it), never the layout:
every way the file can be wrong is refused with its name and without the password."""
from __future__ import annotations

import os

import pytest

from appliance.oms.credentials import (CredentialsError, load_venue_credentials, parse_venue_credentials,
                                       write_venue_credentials)

SECRET = "Zq9!xK2#pw"


def _file(tmp_path, text: str, mode: int = 0o600, name: str = "venue.credentials"):
    path = tmp_path / name
    path.write_text(text)
    os.chmod(path, mode)
    return path


def test_a_private_file_gives_the_login_and_its_repr_hides_the_password(tmp_path):
    path = _file(tmp_path, f"# comment\n\nusername = ALGO1\npassword={SECRET}\n")
    creds = load_venue_credentials(str(path))
    assert (creds.username, creds.password, creds.source) == ("ALGO1", SECRET, str(path))
    assert SECRET not in repr(creds) and SECRET not in str(creds) and "ALGO1" in repr(creds)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644, 0o610])
def test_a_file_group_or_others_may_touch_is_refused_like_ssh_does(tmp_path, mode):
    path = _file(tmp_path, f"username = ALGO1\npassword = {SECRET}\n", mode)
    with pytest.raises(CredentialsError) as raised:
        load_venue_credentials(str(path))
    assert str(path) in str(raised.value) and f"{mode:04o}" in str(raised.value) and "chmod 600" in str(raised.value)
    assert SECRET not in str(raised.value)


def test_a_file_of_another_user_is_refused(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("only root can give a file away")
    path = _file(tmp_path, f"username = ALGO1\npassword = {SECRET}\n")
    os.chown(path, 4242, -1)
    with pytest.raises(CredentialsError, match="belongs to uid 4242"):
        load_venue_credentials(str(path))


def test_missing_symlinked_and_non_regular_files_are_refused_by_name(tmp_path):
    with pytest.raises(CredentialsError, match=r"venue\.credentials does not exist \(create it with mode 0600"):
        load_venue_credentials(str(tmp_path / "venue.credentials"))
    target = _file(tmp_path, f"username = ALGO1\npassword = {SECRET}\n", name="real")
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(CredentialsError, match="symbolic link"):
        load_venue_credentials(str(tmp_path / "link"))
    os.mkfifo(tmp_path / "fifo", 0o600)            # opened without blocking, then refused
    with pytest.raises(CredentialsError, match="not a regular file"):
        load_venue_credentials(str(tmp_path / "fifo"))
    _file(tmp_path, "x" * 5000, name="big")
    with pytest.raises(CredentialsError, match="at most 4096"):
        load_venue_credentials(str(tmp_path / "big"))


@pytest.mark.parametrize("text,reason", [
    (f"password = {SECRET}\n", "has no username"),
    ("username = ALGO1\n", "has no password"),
    ("", "has no username and no password"),
    (f"username = ALGO1\npassword = {SECRET}\npassword = {SECRET}\n", "line 3: password given twice"),
    (f"user = ALGO1\npassword = {SECRET}\n", "line 1: expected 'username = NAME'"),
    (f"username ALGO1\npassword = {SECRET}\n", "line 1: expected"),
    (f"username = TOOLONGNAME\npassword = {SECRET}\n", "line 1: username must be 1..6"),
    (f"username = ALGO1\npassword = {SECRET}{SECRET}\n", "line 2: password must be 1..10 printable"),
    ("username = ALGO1\npassword = two words\n", "line 2: password must be"),
])
def test_a_malformed_file_names_the_line_and_never_quotes_the_password(text, reason):
    with pytest.raises(CredentialsError) as raised:
        parse_venue_credentials(text.encode(), "/x/venue.credentials")
    assert reason in str(raised.value) and "/x/venue.credentials" in str(raised.value)
    assert SECRET not in str(raised.value)
    with pytest.raises(CredentialsError, match="not ASCII"):
        parse_venue_credentials("password = pässword\n".encode(), "/x/v")


def test_systemds_copy_wins_and_is_not_held_to_the_mode_rule(tmp_path, monkeypatch):
    """systemd's credential directory is a private read-only mount; its files may carry an ACL
    (mode bits 0440) for the unit's user."""
    on_disk = _file(tmp_path, "username = DISK\npassword = disk\n")
    provided = tmp_path / "creds"
    provided.mkdir()
    _file(provided, f"username = SYSD\npassword = {SECRET}\n", 0o440)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(provided))
    creds = load_venue_credentials(str(on_disk))
    assert (creds.username, creds.source) == ("SYSD", str(provided / "venue.credentials"))
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path / "elsewhere"))
    assert load_venue_credentials(str(on_disk)).username == "DISK"


def test_written_files_are_0600_from_their_creation_and_never_replace_one(tmp_path):
    path = tmp_path / "run" / "venue.credentials"
    old = os.umask(0)                              # even with no umask at all
    try:
        write_venue_credentials(str(path), "ALGO1", SECRET)
    finally:
        os.umask(old)
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert load_venue_credentials(str(path)).password == SECRET
    with pytest.raises(FileExistsError):
        write_venue_credentials(str(path), "ALGO2", "other")


def test_the_oms_process_refuses_a_readable_credentials_file_with_exit_status_2(write_layout, unique_name,
                                                                                 spawner, tmp_path):
    from appliance.runtime.layout import load_layout
    from appliance.runtime.memory import SharedMemory
    from conftest import output_of
    from oms_rig import oms_layout
    creds = _file(tmp_path, f"username = ALGO1\npassword = {SECRET}\n", 0o644)
    path = write_layout(oms_layout(unique_name, 1, str(tmp_path / "j.bin"), credentials=str(creds)))
    with SharedMemory.create(load_layout(path)):
        proc = spawner.start(path, "oms")
        assert proc.wait(30) == 2
        out = output_of(proc)
    assert "processes.oms.params.credentials" in out and "chmod 600" in out and str(creds) in out
    assert SECRET not in out
