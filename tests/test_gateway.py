"""`dkg gateway` against a real Orthanc and DCMTK's tools (issue 25): store, retrieve, access.

One Orthanc and one gateway process per test module, on free loopback ports (the
fault tests in test_gateway_faults.py start their own). Instances are tiny: 32² 16-bit CT,
RGB ultrasound, a 3-frame 16-bit object and an RLE-compressed CT.
"""

from __future__ import annotations

import socket
import time

import pytest

from tests import gateway_kit as kit

pytestmark = pytest.mark.skipif(kit.servers_missing() is not None, reason=str(kit.servers_missing()))
pydicom = pytest.importorskip("pydicom")
pytest.importorskip("pynetdicom")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Orthanc + the gateway + a workstation's storescp (the C-MOVE destination)."""
    folder = tmp_path_factory.mktemp("gateway_site")
    port, status_port, ws_port = kit.free_port(), kit.free_port(), kit.free_port()
    pacs = kit.Orthanc(folder / "orthanc", {"gateway": (kit.GATEWAY_AET, port), "direct": (kit.DIRECT_AET, kit.free_port()),
                                            "ws": (kit.WORKSTATION_AET, ws_port)})
    pacs.start()
    gateway, storescp = None, None
    try:  # whatever fails to start, nothing is left running
        config = kit.gateway_config(folder, pacs, port, status_port)
        gateway = kit.GatewayProcess(config, port, status_port).start()
        inbox = folder / "ws_inbox"
        inbox.mkdir()
        storescp = kit.subprocess.Popen(["storescp", "-aet", kit.WORKSTATION_AET, "-od", str(inbox), str(ws_port)],
                                        env={**kit.os.environ, **kit.NODELAY_ENV}, stdout=kit.subprocess.DEVNULL,
                                        stderr=kit.subprocess.DEVNULL)
        kit.wait_port(ws_port, process=storescp)
        yield {"folder": folder, "pacs": pacs, "gateway": gateway, "port": port, "inbox": inbox}
    finally:
        if storescp is not None:
            storescp.terminate()
            storescp.wait()
        if gateway is not None:
            gateway.stop()
        pacs.stop()


def send(site, files, aet=kit.MODALITY_AET, check=True):
    return kit.store(site["port"], files, aet=aet, check=check)


def get(site, study, out, aet=kit.WORKSTATION_AET, port=None, called=kit.GATEWAY_AET, check=True):
    out.mkdir(parents=True, exist_ok=True)
    return kit.dcmtk("getscu", "-S", "-aet", aet, "-aec", called, kit.HOST, port or site["port"],
                     "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}", "-od", out, check=check)


def read_all(folder):
    return {str(ds.SOPInstanceUID): ds for ds in (pydicom.dcmread(p) for p in sorted(folder.iterdir()))}


def assert_round_trip(files, received):
    originals = {str(ds.SOPInstanceUID): ds for ds in map(pydicom.dcmread, files)}
    assert sorted(received) == sorted(originals)
    for uid, original in originals.items():
        assert kit.same_instance(original, received[uid]) == [], uid


@pytest.fixture(scope="module")
def stored_study(site):
    """One study of each kind, sent through the gateway and forwarded to Orthanc."""
    study, files = kit.write_study(site["folder"] / "study1")
    result = send(site, files)
    assert "Received Store Response (Success)" in result.stderr or result.returncode == 0
    status = site["gateway"].wait_forwarded()
    assert status["queue_depth"] == 0, site["gateway"].log_text()[-3000:]
    return study, files


def test_store_forwards_ciphertext_only(site, stored_study):
    study, files = stored_study
    pacs = site["pacs"]
    found = pacs.instances()
    originals = [pydicom.dcmread(p) for p in files]
    for original in originals:
        ids = found.get(str(original.SOPInstanceUID))
        assert ids is not None and len(ids) == 1
        stored = pydicom.dcmread(kit.io.BytesIO(pacs.file(ids[0])))
        assert stored.get_private_item(0x0009, 0x01, "KERAS_DKG 1") is not None  # cipher metadata kept
        assert stored.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
        plain = original.pixel_array.tobytes()
        assert plain not in bytes(stored.PixelData), "plaintext pixels reached the PACS"
        assert stored.PatientName == original.PatientName  # the header stays in clear (docs/gateway.md)
    status = site["gateway"].status()
    assert status["stored"] >= len(files) and status["forwarded"] >= len(files)


def test_direct_get_from_orthanc_is_ciphertext(site, stored_study, tmp_path):
    study, files = stored_study
    get(site, study, tmp_path / "direct", aet=kit.DIRECT_AET, port=site["pacs"].dicom_port, called=kit.PACS_AET)
    received = read_all(tmp_path / "direct")
    assert len(received) == len(files)
    for path in files:
        original = pydicom.dcmread(path)
        ciphertext = received[str(original.SOPInstanceUID)]
        assert original.pixel_array.tobytes() not in bytes(ciphertext.PixelData)


def test_get_through_gateway_returns_the_originals(site, stored_study, tmp_path):
    study, files = stored_study
    get(site, study, tmp_path / "get")
    assert_round_trip(files, read_all(tmp_path / "get"))


def test_move_through_gateway_delivers_the_originals(site, stored_study):
    study, files = stored_study
    inbox = site["inbox"]
    kit.dcmtk("movescu", "-S", "-aet", kit.WORKSTATION_AET, "-aem", kit.WORKSTATION_AET, "-aec", kit.GATEWAY_AET,
              kit.HOST, site["port"], "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}")
    assert_round_trip(files, read_all(inbox))


def test_find_is_relayed(site, stored_study):
    study, files = stored_study
    result = kit.dcmtk("findscu", "-S", "-aet", kit.WORKSTATION_AET, "-aec", kit.GATEWAY_AET, kit.HOST, site["port"],
                       "-k", "QueryRetrieveLevel=IMAGE", "-k", f"StudyInstanceUID={study}", "-k", "SOPInstanceUID")
    assert result.stderr.count("Find Response:") + result.stdout.count("Find Response:") >= len(files)


def audit_actions(site) -> list[dict]:
    from keras_dkg.runtime.keystore.custody import Credentials
    from keras_dkg.runtime.keystore.store import KeyStore

    store = KeyStore(site["folder"] / "keys", credentials=Credentials(key_file=str(site["folder"] / "master.key")))
    return store.audit.check()[1]


@pytest.mark.parametrize("case", ["unknown AE", "wrong called AE", "store-only AE retrieves", "retrieve-only AE stores"])
def test_access_refusals_are_refused_and_audited(site, stored_study, tmp_path, case):
    study, files = stored_study
    before = site["gateway"].status()["refused"]
    if case == "unknown AE":
        result = send(site, files[:1], aet="INTRUDER", check=False)
        assert result.returncode != 0 or "Association Rejected" in result.stderr
    elif case == "wrong called AE":
        result = kit.dcmtk("storescu", "-aet", kit.MODALITY_AET, "-aec", "NOT_GATEWAY", kit.HOST, site["port"],
                           files[0], check=False)
        assert "Association Rejected" in result.stderr or result.returncode != 0
    elif case == "store-only AE retrieves":
        get(site, study, tmp_path / "x", aet=kit.MODALITY_AET, check=False)
        assert not list((tmp_path / "x").iterdir())
    else:
        send(site, files[:1], aet=kit.WORKSTATION_AET, check=False)
    assert site["gateway"].status()["refused"] > before
    refusals = [r for r in audit_actions(site) if r["action"] == "gateway-refuse"]
    assert refusals and all(r.get("address") == kit.HOST and r.get("calling_ae") for r in refusals)


def test_wrong_host_is_refused(site, stored_study):
    """An allowed AE title from an address it is not tied to (127.0.0.2 is loopback too)."""
    from pynetdicom import AE

    ae = AE(ae_title=kit.MODALITY_AET)
    ae.add_requested_context("1.2.840.10008.1.1")
    assoc = ae.associate(kit.HOST, site["port"], ae_title=kit.GATEWAY_AET, bind_address=("127.0.0.2", 0))
    established = assoc.is_established
    if established:
        assoc.release()
    assert not established


def test_garbage_and_truncated_pdus_do_not_stop_service(site, stored_study):
    for junk in (b"\x00" * 7, b"GET / HTTP/1.1\r\n\r\n", b"\x01\x00\x00\x00\xff\xff" + b"\x00" * 20,
                 bytes(range(256)) * 4):
        with socket.create_connection((kit.HOST, site["port"]), timeout=5) as sock:
            sock.sendall(junk)
            time.sleep(0.05)
    result = kit.dcmtk("echoscu", "-aet", kit.MODALITY_AET, "-aec", kit.GATEWAY_AET, kit.HOST, site["port"])
    assert result.returncode == 0


def test_every_store_and_retrieve_is_audited(site, stored_study):
    study, files = stored_study
    records = audit_actions(site)
    uids = {str(pydicom.dcmread(p).SOPInstanceUID) for p in files}
    stored = {r["file"].rsplit("/", 1)[1] for r in records if r["action"] == "encrypt" and r.get("file", "").startswith("dicom:")}
    assert uids <= stored
    assert all(f"{kit.MODALITY_AET}@{kit.HOST}" in r["file"] for r in records if r["action"] == "encrypt")
    assert any(r["action"] == "gateway-retrieve" and r.get("calling_ae") == kit.WORKSTATION_AET for r in records)
