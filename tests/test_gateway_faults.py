"""`dkg gateway` faults against a real Orthanc (issue 25): the PACS stopped mid-stream, the gateway
SIGKILLed mid-stream, a full spool disk, SIGTERM with a full queue, `dkg gateway check`, and
the forwarder's quarantine. Zero lost, zero duplicated (counted by SOP Instance UID in
Orthanc's REST API), and everything in Orthanc decrypts (a C-GET through the gateway)."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests import gateway_kit as kit

pytestmark = pytest.mark.skipif(kit.servers_missing() is not None, reason=str(kit.servers_missing()))
pydicom = pytest.importorskip("pydicom")
pytest.importorskip("pynetdicom")


@pytest.fixture(scope="module")
def pacs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("faults_pacs")
    ports = {"gateway": kit.free_port(), "ws": kit.free_port(), "status": kit.free_port()}
    orthanc = kit.Orthanc(folder, {"gateway": (kit.GATEWAY_AET, ports["gateway"]),
                                   "ws": (kit.WORKSTATION_AET, ports["ws"])})
    orthanc.ports = ports
    orthanc.start()
    try:
        yield orthanc
    finally:
        orthanc.stop()


@pytest.fixture
def node(pacs, tmp_path):
    """A fresh gateway config (own spool and key store) for the module's Orthanc; Orthanc emptied."""
    if pacs.process is None:
        pacs.start()
    pacs.clear()
    config = kit.gateway_config(tmp_path, pacs, pacs.ports["gateway"], pacs.ports["status"])
    gateway = kit.GatewayProcess(config, pacs.ports["gateway"], pacs.ports["status"])
    yield gateway
    gateway.stop(signal.SIGKILL)


def storescu_verbose(port: int, files) -> subprocess.Popen:
    return subprocess.Popen(["storescu", "-v", "-aet", kit.MODALITY_AET, "-aec", kit.GATEWAY_AET, kit.HOST, str(port),
                             *map(str, files)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**kit.os.environ, **kit.NODELAY_ENV})


def acknowledged(output: str, files) -> list[Path]:
    """The files storescu got Success for, in order (it sends them in order, one at a time)."""
    answers = [line for line in output.splitlines() if "Received Store Response" in line]
    return [f for f, line in zip(files, answers, strict=False) if "(Success)" in line]


def uid_of(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def wait_for(predicate, timeout: float = 30.0, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False


def assert_in_orthanc_once_and_decrypts(pacs, gateway, files, tmp_path, study):
    found = pacs.instances()
    for path in files:
        assert len(found.get(uid_of(path), [])) == 1, f"{path.name}: {found.get(uid_of(path))}"
    assert all(len(ids) == 1 for ids in found.values()), "duplicates in Orthanc"
    out = tmp_path / f"back_{time.monotonic_ns()}"
    out.mkdir()
    kit.dcmtk("getscu", "-S", "-aet", kit.WORKSTATION_AET, "-aec", kit.GATEWAY_AET, kit.HOST, gateway.port,
              "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}", "-od", out)
    back = {str(ds.SOPInstanceUID): ds for ds in map(pydicom.dcmread, out.iterdir())}
    for path in files:
        assert kit.same_instance(pydicom.dcmread(path), back[uid_of(path)]) == []


def test_check_reports_each_part(node, pacs):
    ok = subprocess.run([kit.sys.executable, "-m", "keras_dkg.cli", "gateway", "check", "--config", str(node.config)],
                        capture_output=True, text=True, cwd=kit.ROOT, timeout=60)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "ok    pacs" in ok.stdout and "ok    key store" in ok.stdout and "all ok" in ok.stdout
    pacs.stop()
    down = subprocess.run([kit.sys.executable, "-m", "keras_dkg.gateway.cli", "check", "--config", str(node.config)],
                          capture_output=True, text=True, cwd=kit.ROOT, timeout=60)
    pacs.start()
    assert down.returncode == 1 and "FAIL  pacs" in down.stdout


def test_pacs_stopped_mid_stream_loses_nothing(node, pacs, tmp_path):
    study, files = kit.write_study(tmp_path / "in", kinds=("ct",), count=60)
    node.start()
    sender = storescu_verbose(node.port, files)
    assert wait_for(lambda: node.status()["forwarded"] >= 5, step=0.01)
    pacs.stop(signal.SIGKILL)  # mid-stream, hard: the gateway keeps answering Success, the spool grows
    output = sender.communicate(timeout=60)[0]
    assert node.status()["queue_depth"] > 0
    pacs.start()
    status = node.wait_forwarded()
    assert status["queue_depth"] == 0 and status["retried"] > 0
    assert acknowledged(output, files) == files
    assert_in_orthanc_once_and_decrypts(pacs, node, files, tmp_path, study)


def test_gateway_killed_mid_stream_loses_nothing(node, pacs, tmp_path):
    study, files = kit.write_study(tmp_path / "in", kinds=("ct",), count=40)
    node.start()
    sender = storescu_verbose(node.port, files)
    assert wait_for(lambda: node.status()["stored"] >= 8)
    node.stop(signal.SIGKILL)
    output = sender.communicate(timeout=60)[0]
    acked = acknowledged(output, files)
    assert 8 <= len(acked) < len(files)
    node.start()  # resumes the spool: every Success reaches Orthanc without a resend
    node.wait_forwarded()
    assert_in_orthanc_once_and_decrypts(pacs, node, acked, tmp_path, study)
    kit.store(node.port, files)  # the modality resends everything: still one copy each
    node.wait_forwarded()
    assert_in_orthanc_once_and_decrypts(pacs, node, files, tmp_path, study)


def test_sigterm_drains_and_a_restart_resumes(node, pacs, tmp_path):
    study, files = kit.write_study(tmp_path / "in", kinds=("ct", "us"), count=3)
    pacs.stop()
    node.start()
    kit.store(node.port, files)
    assert node.status()["queue_depth"] == len(files)
    started = time.monotonic()
    assert node.stop(signal.SIGTERM) == 0
    assert time.monotonic() - started < 25
    assert "instance(s) left in the spool" in node.log_text()
    pacs.start()
    node.start()
    assert node.wait_forwarded()["queue_depth"] == 0
    assert_in_orthanc_once_and_decrypts(pacs, node, files, tmp_path, study)


def test_full_spool_disk_refuses_and_loses_nothing(node, pacs, tmp_path):
    spool = tmp_path / "spool"
    spool.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(spool)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (not root?): {mounted.stderr.decode().strip()}")
    try:
        pacs.stop()  # nothing leaves the spool: it fills
        study, files = kit.write_study(tmp_path / "in", kinds=("ct",), count=30, side=96)  # ~18 KB each
        node.start()
        sender = storescu_verbose(node.port, files)
        output = sender.communicate(timeout=120)[0]
        acked = acknowledged(output, files)
        assert 0 < len(acked) < len(files)
        assert "Refused: OutOfResources" in output
        assert node.status()["refused"] >= 1  # storescu halts at its first refusal
        pacs.start()
        node.wait_forwarded()
        assert_in_orthanc_once_and_decrypts(pacs, node, acked, tmp_path, study)
        refused = [f for f in files if f not in acked]
        assert not any(uid_of(f) in pacs.instances() for f in refused)
    finally:
        node.stop(signal.SIGKILL)
        subprocess.run(["umount", "-l", str(spool)], capture_output=True)


def test_forwarder_quarantines_after_n_refusals(tmp_path):
    """A PACS that answers 0xA700 every time: the instance is quarantined with the reason after N tries."""
    from keras_dkg.gateway.forwarder import Forwarder
    from keras_dkg.gateway.spool import Spool
    from keras_dkg.gateway.status import Counters

    study, files = kit.write_study(tmp_path / "in", kinds=("ct",), count=1)

    class Refusing:
        is_established = True
        accepted_contexts = [type("C", (), {"abstract_syntax": "1.2.840.10008.5.1.4.1.1.2"})()]

        def send_c_store(self, path):
            return pydicom.Dataset({0x00000900: pydicom.DataElement(0x00000900, "US", 0xA700)})

        def release(self):
            pass

    class FakePacs:
        def storage_association(self, classes):
            return Refusing()

    spool = Spool(tmp_path / "spool")
    path = spool.put(uid_of(files[0]), files[0].read_bytes())
    counters = Counters()
    forwarder = Forwarder(spool, FakePacs(), counters, workers=1, retries=3, backoff=(0.01, 0.02))
    forwarder.start()
    assert wait_for(lambda: counters.snapshot()["quarantined"] == 1, timeout=10)
    forwarder.stop()
    assert not path.exists() and spool.quarantined() == 1
    reason = (spool.quarantine_folder / path.name).with_suffix(".reason").read_text()
    assert "0xA700" in reason and "3 of 3" in reason
    shutil.rmtree(spool.folder)


def test_tls_requires_a_client_certificate_from_the_ca(pacs, tmp_path):
    """DICOM TLS (1.2+): a client with a certificate the CA signed stores; none, or another CA's, is refused."""
    if pacs.process is None:
        pacs.start()
    pki = kit.make_pki(tmp_path / "pki")
    tls = f'[tls]\ncert = "{pki["gateway.crt"]}"\nkey = "{pki["gateway.key"]}"\nca = "{pki["ca.crt"]}"\n'
    config = kit.gateway_config(tmp_path, pacs, pacs.ports["gateway"], pacs.ports["status"], tls=tls)
    gateway = kit.GatewayProcess(config, pacs.ports["gateway"], pacs.ports["status"]).start()
    try:
        study, files = kit.write_study(tmp_path / "in", kinds=("ct",), count=2)
        base = ["-aet", kit.MODALITY_AET, "-aec", kit.GATEWAY_AET, kit.HOST, gateway.port]
        good = kit.dcmtk("storescu", "+tls", pki["client.key"], pki["client.crt"], "+cf", pki["ca.crt"], *base,
                         *files, check=False)
        assert good.returncode == 0, good.stderr
        anonymous = kit.dcmtk("storescu", "+tla", "+cf", pki["ca.crt"], *base, files[0], check=False)
        rogue = kit.dcmtk("storescu", "+tls", pki["rogue.key"], pki["rogue.crt"], "+cf", pki["ca.crt"], *base,
                          files[0], check=False)
        plain = kit.dcmtk("storescu", "-to", "3", "-ta", "3", *base, files[0], check=False)  # no TLS: no answer
        assert anonymous.returncode != 0 and rogue.returncode != 0 and plain.returncode != 0
        assert gateway.wait_forwarded()["stored"] == len(files)
        assert all(uid_of(f) in pacs.instances() for f in files)
        echo = kit.dcmtk("echoscu", "+tls", pki["client.key"], pki["client.crt"], "+cf", pki["ca.crt"], *base)
        assert echo.returncode == 0
    finally:
        gateway.stop(signal.SIGKILL)
