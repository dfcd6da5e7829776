"""Sharing results through DVC remotes (README, "Sharing results"): the shared demo repository's
outputs pushed once to the default directory remote and to a real OpenSSH server on 127.0.0.1, pulled
into fresh clones that rerun nothing; corrupt, partial, full, read-only, unreachable and misnamed
remotes; the sweep's experiments through a git remote."""

from __future__ import annotations

import getpass
import hashlib
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest
import yaml

from tests.pipelines.conftest import ROOT, run_command, stages_run

pytestmark = pytest.mark.slow
logger = logging.getLogger(__name__)

STORAGE = "perl_pipeline-dvc-storage"  # .dvc/config's default remote: a directory beside the project
REPORT = "data/demo/08_reporting/base_to_novel"


def dvc_result(repo: Path, *args: str) -> subprocess.CompletedProcess:
    """`dvc <args>` in `repo` that may fail: its result (the conftest's `dvc` asserts success)."""
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "KEDRO_DISABLE_TELEMETRY": "1"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=repo, env=env, capture_output=True, text=True, timeout=600
    )


def dvc(repo: Path, *args: str) -> str:
    result = dvc_result(repo, *args)
    assert result.returncode == 0, f"dvc {' '.join(args)}:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
    return result.stdout + result.stderr


def outputs(repo: Path) -> dict[str, str]:
    """Every file DVC or git keeps under the demo's data folder: path -> sha256 (not raw data, nor
    a sweep's table, which the sweep test leaves in the shared repository's workspace)."""
    data = repo / "data" / "demo"
    return {
        p.relative_to(data).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(data.rglob("*"))
        if p.is_file()
        and p.relative_to(data).parts[0] != "01_raw"
        and p.relative_to(data).parts[:2] != ("08_reporting", "ablations")
    }


def clone(source: Path, target: Path) -> Path:
    run_command(["git", "clone", "-q", str(source), str(target)], target.parent)
    return target


def cache_is_sound(repo: Path) -> None:
    """Every object in the repository's DVC cache has the md5 it is named by (none half-written)."""
    for obj in (repo / ".dvc" / "cache" / "files" / "md5").rglob("*"):
        if obj.is_file() and not obj.name.endswith(".dir"):
            name = obj.parent.name + obj.name
            assert hashlib.md5(obj.read_bytes()).hexdigest() == name, f"corrupt cache object {obj}"


@dataclass(frozen=True)
class Lab:
    """A copy of the shared demo repository (its outputs and DVC cache) that pushed them once to
    its default remote, the directory ``<lab>/perl_pipeline-dvc-storage`` beside it."""

    root: Path
    pusher: Path
    push_output: str
    push_seconds: float

    @property
    def storage(self) -> Path:
        return self.root / STORAGE


@pytest.fixture(scope="module")
def lab(dvc_demo, tmp_path_factory) -> Lab:
    root = tmp_path_factory.mktemp("lab")
    skip = dvc_demo.repo / ".dvc" / "tmp"  # queue workspaces and locks: not part of the project
    pusher = shutil.copytree(
        dvc_demo.repo,
        root / "pusher",
        symlinks=True,
        ignore=lambda folder, names: names if Path(folder) == skip else [],
    )
    started = time.monotonic()
    output = dvc(pusher, "push")  # no -r: the default remote of the committed .dvc/config
    return Lab(root, pusher, output, time.monotonic() - started)


def test_the_default_remote_is_a_directory_beside_the_project_and_takes_every_cached_output(lab):
    config = (ROOT / ".dvc" / "config").read_text()
    assert "remote = storage" in config and f"url = ../../{STORAGE}" in config and "verify = true" in config
    lock = yaml.safe_load((lab.pusher / "dvc.lock").read_text())["stages"]
    cached, in_git = {}, {}
    for stage, entry in lock.items():
        for out in entry.get("outs", []):
            git = stage == "toy_clip" or out["path"].endswith(("metrics.json", "per_step.csv"))
            (in_git if git else cached)[out["path"]] = out["md5"]
    stored = {p.parent.name + p.name for p in (lab.storage / "files" / "md5").rglob("*") if p.is_file()}
    kinds = ("04_feature/", "05_model_input/", "06_models/", "07_model_output/", "08_reporting/")
    for kind in kinds:  # text features, few-shot tables, adapters, runs, reports
        assert any(kind in path for path in cached), kind
    missing = {path for path, md5 in cached.items() if md5 not in stored}
    assert not missing, f"cached outputs not pushed: {missing}"
    assert not {path for path, md5 in in_git.items() if md5 in stored}  # toy CLIP, metrics: git's
    assert "files pushed" in lab.push_output
    assert "in sync" in dvc(lab.pusher, "status", "--cloud", "base_to_novel")
    size = sum(p.stat().st_size for p in lab.storage.rglob("*") if p.is_file())
    logger.info(f"push: {len(stored)} objects, {size / 1024:.0f} KiB in {lab.push_seconds:.1f} s")


def test_a_fresh_clone_pulls_every_output_and_reruns_nothing(lab):
    colleague = clone(lab.pusher, lab.root / "colleague")  # beside the pusher: the same default remote
    started = time.monotonic()
    pulled = dvc(colleague, "pull", "--with-deps", "base_to_novel")
    logger.info(f"pull: {time.monotonic() - started:.1f} s ({pulled.strip().splitlines()[-1]})")
    assert outputs(colleague) == outputs(lab.pusher)  # every output and report, byte for byte
    assert "Data and pipelines are up to date." in dvc(colleague, "status", "base_to_novel")
    assert stages_run(dvc(colleague, "repro", "base_to_novel")) == set()
    log = run_command(
        [
            sys.executable,
            "-m",
            "kedro",
            "run",
            "--env",
            "demo",
            "--pipelines",
            "base_to_novel",
            "--namespaces",
            "dtd,my_images",
            "--only-missing-outputs",
        ],
        colleague,
    )
    assert "Skipping all" in log and "Running node" not in log, log[-3000:]  # provenance agrees
    assert outputs(colleague) == outputs(lab.pusher)
    assert "Data and pipelines are up to date." in dvc(colleague, "status", "base_to_novel")


def test_a_corrupt_or_partial_remote_is_refused_by_checksums_and_nothing_is_half_written(lab, tmp_path):
    lock = yaml.safe_load((lab.pusher / "dvc.lock").read_text())["stages"]
    adapters = next(o for o in lock["base_to_novel_model@dtd"]["outs"] if "06_models" in o["path"])
    manifest = lab.storage / "files" / "md5" / adapters["md5"][:2] / adapters["md5"][2:]
    entry = json.loads(manifest.read_text())[0]  # one file of the dtd adapters' folder
    obj = Path("files", "md5", entry["md5"][:2], entry["md5"][2:])
    expected = outputs(lab.pusher)

    partial = shutil.copytree(lab.storage, tmp_path / "partial")
    (partial / obj).unlink()
    corrupt = shutil.copytree(lab.storage, tmp_path / "corrupt")
    (corrupt / obj).chmod(0o644)
    data = bytearray((corrupt / obj).read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, another content
    (corrupt / obj).write_bytes(bytes(data))

    for remote, says in ((partial, entry["md5"]), (corrupt, adapters["path"])):
        repo = clone(lab.pusher, tmp_path / f"clone-{remote.name}")
        dvc(repo, "remote", "modify", "--local", "storage", "url", str(remote))
        result = dvc_result(repo, "pull", "--with-deps", "base_to_novel")
        assert result.returncode != 0, result.stdout
        message = result.stdout + result.stderr
        assert says in message, message  # the missing object / the output that failed its checksum
        got = outputs(repo)
        assert not any(path.startswith("06_models/dtd/base/") for path in got), sorted(got)
        assert all(expected[path] == sha for path, sha in got.items())  # the rest whole, nothing half
        cache_is_sound(repo)  # the corrupt object was not kept
        assert not (repo / ".dvc" / "cache" / obj).exists()


@dataclass(frozen=True)
class Sshd:
    """An OpenSSH server on 127.0.0.1 started by the test (keys generated in tmp, key login only)."""

    port: int
    user: str
    keyfile: Path
    home: Path  # a HOME whose .ssh/known_hosts trusts the generated host key

    def url(self, path: Path) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}{path}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_sshd(folder: Path, read_only: bool = False) -> tuple[Sshd, subprocess.Popen]:
    """Start ``sshd -D`` on a free port of 127.0.0.1, with a host key and a user key made here."""
    sshd = Path("/usr/sbin/sshd")
    assert sshd.is_file(), (
        "OpenSSH's server is not installed (/usr/sbin/sshd): `apt-get install openssh-server` "
        "(.ci/run installs it); the SSH remote test needs a real server"
    )
    folder.mkdir(parents=True)
    for name in ("host_key", "user_key"):
        run_command(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / name)], folder)
    (folder / "authorized_keys").write_text((folder / "user_key.pub").read_text())
    port, user = free_port(), getpass.getuser()
    sftp = "internal-sftp -R" if read_only else "internal-sftp"
    (folder / "sshd_config").write_text(
        f"ListenAddress 127.0.0.1\nHostKey {folder / 'host_key'}\nPidFile none\n"
        f"AuthorizedKeysFile {folder / 'authorized_keys'}\nPermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
        f"UsePAM no\nStrictModes no\nAllowUsers {user}\nSubsystem sftp {sftp}\n"
    )
    home = folder / "home"
    (home / ".ssh").mkdir(parents=True)
    host_key = (folder / "host_key.pub").read_text().split()
    (home / ".ssh" / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n")
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)  # privilege separation
    process = subprocess.Popen(
        [str(sshd), "-D", "-e", "-f", str(folder / "sshd_config"), "-p", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 15
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"sshd did not start on 127.0.0.1:{port}: {process.communicate()[0]}")
            time.sleep(0.1)
    return Sshd(port, user, folder / "user_key", home), process


@pytest.fixture
def sshd(tmp_path, monkeypatch) -> Iterator[tuple[Sshd, Sshd]]:
    """A writable and a read-only (``internal-sftp -R``) OpenSSH server, stopped afterwards."""
    servers, processes = [], []
    try:
        for name, read_only in (("sshd", False), ("sshd-ro", True)):
            server, process = start_sshd(tmp_path / name, read_only)
            servers.append(server)
            processes.append(process)
        monkeypatch.setenv("HOME", str(servers[0].home))
        (servers[0].home / ".ssh" / "known_hosts").write_text(
            "".join((s.home / ".ssh" / "known_hosts").read_text() for s in servers)
        )
        yield servers[0], servers[1]
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=10)


def add_remote(repo: Path, name: str, url: str, keyfile: Path | None = None) -> None:
    dvc(repo, "remote", "add", "--local", name, url)
    if keyfile:
        dvc(repo, "remote", "modify", "--local", name, "keyfile", str(keyfile))


def test_an_ssh_remote_on_a_real_openssh_server_pushes_and_pulls(lab, sshd, tmp_path):
    server, read_only = sshd
    pusher = shutil.copytree(lab.pusher, tmp_path / "pusher", symlinks=True)  # its .dvc/config.local ours
    add_remote(pusher, "lab", server.url(tmp_path / "store"), server.keyfile)
    started = time.monotonic()
    pushed = dvc(pusher, "push", "-r", "lab")
    logger.info(f"ssh push: {time.monotonic() - started:.1f} s ({pushed.strip().splitlines()[-1]})")
    assert "files pushed" in pushed
    assert any((tmp_path / "store" / "files" / "md5").rglob("*")), "nothing arrived on the server"

    colleague = clone(pusher, tmp_path / "colleague")
    add_remote(colleague, "lab", server.url(tmp_path / "store"), server.keyfile)
    started = time.monotonic()
    dvc(colleague, "pull", "-r", "lab", "--with-deps", "base_to_novel")
    logger.info(f"ssh pull: {time.monotonic() - started:.1f} s")
    assert outputs(colleague) == outputs(lab.pusher)
    assert "Data and pipelines are up to date." in dvc(colleague, "status", "base_to_novel")

    # a read-only server, an unreachable one, a remote name the project does not have
    add_remote(pusher, "readonly", read_only.url(tmp_path / "ro-store"), read_only.keyfile)
    add_remote(pusher, "down", f"ssh://{server.user}@127.0.0.1:{free_port()}{tmp_path}/x", server.keyfile)
    for remote, says in (
        ("readonly", "Permission denied"),
        ("down", "Connect call failed"),
        ("nosuch", "remote 'nosuch' doesn't exist"),
    ):
        result = dvc_result(pusher, "push", "-r", remote)
        assert result.returncode != 0 and says in result.stderr + result.stdout, (remote, result.stderr)
    assert not (tmp_path / "ro-store").exists()
    cache_is_sound(pusher)
    assert "in sync" in dvc(pusher, "status", "--cloud", "-r", "lab", "base_to_novel")


def test_a_full_remote_stops_the_push_halfway_and_the_next_push_completes_it(lab, tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    size = sum(p.stat().st_size for p in lab.storage.rglob("*") if p.is_file())
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size // 3}", "tmpfs", str(disk)])
    assert mounted.returncode == 0, "a small tmpfs (a disk that fills up) needs root, as CI runs"
    try:
        pusher = shutil.copytree(lab.pusher, tmp_path / "pusher", symlinks=True)
        add_remote(pusher, "small", str(disk / "store"))
        result = dvc_result(pusher, "push", "-r", "small")
        assert result.returncode != 0
        message = result.stderr
        assert "No space left on device" in message and "failed to upload" in message, message
        assert any((disk / "store").rglob("*")), "nothing was pushed before the disk filled"
        cache_is_sound(pusher)
        subprocess.run(["mount", "-o", f"remount,size={size * 4}", str(disk)], check=True)  # room made
        assert "files pushed" in dvc(pusher, "push", "-r", "small")  # the rest
        assert "in sync" in dvc(pusher, "status", "--cloud", "-r", "small", "base_to_novel")
        colleague = clone(pusher, tmp_path / "colleague")
        add_remote(colleague, "small", str(disk / "store"))
        dvc(colleague, "pull", "-r", "small", "--with-deps", "base_to_novel")  # checksums verified
        assert outputs(colleague) == outputs(lab.pusher)
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_experiments_travel_through_a_git_remote_and_the_dvc_remote(lab, tmp_path):
    from perl_pipeline.tools.sweep import rebuild_table, run_sweep

    pusher = shutil.copytree(lab.pusher, tmp_path / "pusher", symlinks=True)
    shown = json.loads(dvc(pusher, "exp", "show", "--json"))
    if not rebuild_sweep_names(shown):  # alone: the sweep test did not queue its perl.steps=1,2 here
        run_sweep([("report_label", ["shared"])], project_path=pusher, jobs=1)  # the report stage only
    table = rebuild_table(pusher)
    names = table["experiment"].to_list()

    origin = tmp_path / "origin.git"
    run_command(["git", "init", "-q", "--bare", str(origin)], tmp_path)
    run_command(["git", "remote", "add", "origin", str(origin)], pusher)
    run_command(["git", "push", "-q", "origin", "HEAD:refs/heads/main"], pusher)
    started = time.monotonic()
    pushed = dvc(pusher, "exp", "push", "origin", *names)  # git refs to origin, outputs to storage
    logger.info(f"exp push of {len(names)}: {time.monotonic() - started:.1f} s")
    assert all(name in pushed for name in names), pushed

    colleague = tmp_path / "colleague"
    run_command(["git", "clone", "-q", "-b", "main", str(origin), str(colleague)], tmp_path)
    # beside the pusher: the same default remote, which `dvc exp push` filled
    assert not rebuild_sweep_names(json.loads(dvc(colleague, "exp", "show", "--json")))  # git clone: none
    dvc(colleague, "exp", "pull", "origin", *names)
    shown = json.loads(dvc(colleague, "exp", "show", "--json"))
    assert set(rebuild_sweep_names(shown)) == set(names)
    pulled = rebuild_table(colleague)  # python -m perl_pipeline.sweep --table, on the other side
    assert pulled.equals(table)
    saved = colleague / "data" / "demo" / "08_reporting" / "ablations" / "ablations.csv"
    assert pl.read_csv(saved, schema_overrides={"value": pl.String}).equals(table)
    # each experiment's outputs (its report, adapters, runs) came through the DVC remote
    from perl_pipeline.tools.sweep import _experiments

    for name in names:
        rev = _experiments(shown)[name]["rev"]
        lock = yaml.safe_load(run_command(["git", "show", f"{rev}:dvc.lock"], colleague))["stages"]
        outs = [o for stage in lock.values() for o in stage.get("outs", []) if "08_reporting" in o["path"]]
        assert outs and all(
            (colleague / ".dvc" / "cache" / "files" / "md5" / o["md5"][:2] / o["md5"][2:]).is_file()
            for o in outs
            if not o["path"].endswith(("metrics.json", "per_step.csv"))
        ), name


def rebuild_sweep_names(shown: list[dict]) -> list[str]:
    """The sweep experiments DVC lists (``dvc exp show --json``)."""
    from perl_pipeline.tools.sweep import sweep_experiments

    return [name for *_, name in sweep_experiments(shown, "conf/demo/parameters.yml")]
