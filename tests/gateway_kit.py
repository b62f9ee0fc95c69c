"""What the gateway tests (and tools/bench_gateway.py) need: a real Orthanc on loopback ports with a
temporary config, DCMTK's tools, tiny DICOM instances, a protected key store, a tiny ONNX model,
and the gateway as its own process.

Orthanc 1.10 listens on every interface (no bind-address option), so it is locked down: no
DICOM peer but the ones named (DicomAlwaysAllow* false, DicomCheckModalityHost true, all on
127.0.0.1), HTTP on loopback only (RemoteAccessAllowed false).
"""

from __future__ import annotations

import io  # noqa: F401 (the tests use kit.io)
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

ORTHANC = "/usr/sbin/Orthanc"
DCMTK_TOOLS = ("storescu", "getscu", "movescu", "findscu", "storescp")
HOST = "127.0.0.1"
GATEWAY_AET, PACS_AET = "DKG_GATEWAY", "ORTHANC"
MODALITY_AET, WORKSTATION_AET, DIRECT_AET = "MODALITY", "WS", "DIRECT"
NODELAY_ENV = {"TCP_NODELAY": "1"}
ROOT = Path(__file__).resolve().parents[1]


def servers_missing() -> str | None:
    """Why the real-server tests cannot run here (None: they can)."""
    missing = [tool for tool in DCMTK_TOOLS if shutil.which(tool) is None]
    if not os.access(ORTHANC, os.X_OK):
        missing.insert(0, ORTHANC)
    if missing:
        return (f"needs Orthanc and DCMTK ({', '.join(missing)} missing): `make servers` installs them "
                "as root with apt (apt-get install orthanc dcmtk)")
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def wait_port(port: int, timeout: float = 15.0, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening on {port}")
        with socket.socket() as sock:
            if sock.connect_ex((HOST, port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {HOST}:{port} after {timeout} s")


class Orthanc:
    """One Orthanc process with its own config and storage; stop() and start() keep the storage."""

    def __init__(self, folder: Path, modalities: dict[str, tuple[str, int]]):
        self.folder = folder
        self.dicom_port, self.http_port = free_port(), free_port()
        self.config_path = folder / "orthanc.json"
        self.modalities = modalities
        self.process: subprocess.Popen | None = None
        self.write_config()

    def write_config(self) -> None:
        storage = self.folder / "storage"
        storage.mkdir(parents=True, exist_ok=True)
        allow = {name: {"AET": aet, "Host": HOST, "Port": port, "AllowEcho": True, "AllowFind": True,
                        "AllowGet": True, "AllowMove": True, "AllowStore": True}
                 for name, (aet, port) in self.modalities.items()}
        config = {"Name": "keras_dkg test PACS", "StorageDirectory": str(storage), "IndexDirectory": str(storage),
                  "DicomAet": PACS_AET, "DicomPort": self.dicom_port, "HttpPort": self.http_port,
                  "RemoteAccessAllowed": False, "AuthenticationEnabled": False, "Plugins": [],
                  "DicomAlwaysAllowStore": False, "DicomAlwaysAllowFind": False, "DicomAlwaysAllowGet": False,
                  "DicomAlwaysAllowMove": False, "DicomAlwaysAllowEcho": False, "DicomCheckModalityHost": True,
                  "DicomCheckCalledAet": True, "DicomModalities": allow, "OverwriteInstances": False,
                  "SaveJobs": False, "StorageCompression": False, "LimitFindResults": 0, "LimitFindInstances": 0}
        self.config_path.write_text(json.dumps(config, indent=2))

    def start(self) -> None:
        log = open(self.folder / "orthanc.log", "ab")  # noqa: SIM115 (the process keeps it)
        self.process = subprocess.Popen([ORTHANC, str(self.config_path)], stdout=log, stderr=log,
                                        env={**os.environ, **NODELAY_ENV}, start_new_session=True)
        try:
            wait_port(self.http_port, process=self.process)
            wait_port(self.dicom_port, process=self.process)
        except (RuntimeError, TimeoutError):
            self.stop()
            raise

    def stop(self, sig=signal.SIGTERM) -> None:
        """Stop and wait for the exit (a new Orthanc on the same storage fails while the old one runs)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def rest(self, path: str, data: bytes | None = None):
        request = urllib.request.Request(f"http://{HOST}:{self.http_port}{path}", data=data,
                                         method="POST" if data is not None else "GET")
        with urllib.request.urlopen(request, timeout=30) as answer:
            body = answer.read()
        return json.loads(body) if body[:1] in (b"{", b"[") else body

    def instances(self) -> dict[str, list[str]]:
        """SOP Instance UID -> Orthanc instance ids (more than one would be a duplicate)."""
        found: dict[str, list[str]] = {}
        for item in self.rest("/instances?expand"):
            found.setdefault(item["MainDicomTags"]["SOPInstanceUID"], []).append(item["ID"])
        return found

    def file(self, orthanc_id: str) -> bytes:
        return self.rest(f"/instances/{orthanc_id}/file")

    def clear(self) -> None:
        for orthanc_id in self.rest("/patients"):
            request = urllib.request.Request(f"http://{HOST}:{self.http_port}/patients/{orthanc_id}", method="DELETE")
            urllib.request.urlopen(request, timeout=30).read()


# --------------------------------------------------------------------------- instances


def _uid() -> str:
    from pydicom.uid import generate_uid

    return generate_uid()


def make_instance(kind: str, study: str, number: int, side: int = 32, seed: int = 0):
    """A tiny image instance: 'ct' (16-bit, 12 stored), 'us' (RGB), 'multiframe' (3 frames), 'rle' (CT, RLE)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, RLELossless

    rng = np.random.default_rng(seed * 1000 + number)
    ds = Dataset()
    ds.PatientName, ds.PatientID = "Test^Gateway", "DKG-TEST-1"
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = study, _uid(), _uid()
    ds.StudyDate, ds.StudyID, ds.AccessionNumber = "20261204", "1", "ACC1"
    ds.SeriesNumber, ds.InstanceNumber = 1, number
    ds.Rows, ds.Columns = side, side
    if kind == "us":
        ds.SOPClassUID, ds.Modality = "1.2.840.10008.5.1.4.1.1.6.1", "US"
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
        ds.BitsAllocated = ds.BitsStored = 8
        ds.HighBit, ds.PixelRepresentation = 7, 0
        pixels = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
    else:
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        if kind == "multiframe":
            ds.SOPClassUID, ds.Modality = "1.2.840.10008.5.1.4.1.1.7.3", "OT"
            ds.NumberOfFrames = 3
            pixels = rng.integers(0, 4096, (3, side, side), dtype=np.uint16)
        else:
            ds.SOPClassUID, ds.Modality = "1.2.840.10008.5.1.4.1.1.2", "CT"
            ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
            pixels = rng.integers(0, 4096, (side, side), dtype=np.uint16)
    ds.PixelData = pixels.tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    if kind == "rle":
        ds.compress(RLELossless)
    return ds


def write_study(folder: Path, kinds=("ct", "us", "multiframe", "rle"), count: int = 1, side: int = 32,
                seed: int = 0) -> tuple[str, list[Path]]:
    """(study UID, files): `count` instances of each kind in one new study."""
    folder.mkdir(parents=True, exist_ok=True)
    study = _uid()
    files = []
    for number, kind in enumerate([k for k in kinds for _ in range(count)], 1):
        ds = make_instance(kind, study, number, side, seed)
        path = folder / f"{kind}_{number}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return study, files


def decoded(ds) -> np.ndarray:
    return ds.pixel_array


def same_instance(original, received) -> list[str]:
    """Differences between what a modality sent and what came back (file meta aside)."""
    from pydicom.uid import UID

    problems = []
    compressed = UID(original.file_meta.TransferSyntaxUID).is_compressed
    skip = {"PixelData"} if compressed else set()
    for element in original:
        if element.keyword in skip:
            continue
        if element.tag not in received:
            problems.append(f"{element.keyword or element.tag} missing")
        elif received[element.tag].value != element.value:
            problems.append(f"{element.keyword or element.tag} differs")
    extra = [str(e.tag) for e in received if e.tag not in original and e.tag.group != 0x0002]
    if extra:
        problems.append(f"extra elements {extra}")
    if compressed and not np.array_equal(decoded(original), decoded(received)):
        problems.append("decoded pixels differ")
    return problems


# --------------------------------------------------------------------------- model, key store, gateway


def tiny_model(path: Path) -> Path:
    """An ONNX 'generator' y = sin(53.7 x): mechanics only, says nothing about key quality."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", "h", "w", 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", "h", "w", 3])
    scale = helper.make_node("Constant", [], ["s"], value=helper.make_tensor("sv", TensorProto.FLOAT, [], [53.7]))
    nodes = [scale, helper.make_node("Mul", ["x", "s"], ["m"]), helper.make_node("Sin", ["m"], ["y"])]
    model = helper.make_model(helper.make_graph(nodes, "tiny", [x], [y]), opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def protected_store(folder: Path, key_file: Path) -> None:
    from keras_dkg.runtime.keystore import admin as keystore_admin
    from keras_dkg.runtime.keystore.custody import Credentials, write_key_file

    if not key_file.exists():
        write_key_file(key_file)
    keystore_admin.init_store(folder, Credentials(key_file=str(key_file)))


def gateway_config(folder: Path, pacs: Orthanc, port: int, status_port: int, extra: str = "",
                   allow: str | None = None, tls: str = "") -> Path:
    from keras_dkg.embedded import seed_path

    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "keys").exists():
        protected_store(folder / "keys", folder / "master.key")
    model = folder / "tiny.onnx"
    if not model.exists():
        tiny_model(model)
    allow = allow if allow is not None else f"""
[[allow]]
ae = "{MODALITY_AET}@{HOST}"
services = ["store"]
[[allow]]
ae = "{WORKSTATION_AET}@{HOST}"
services = ["find", "get", "move"]
port = {pacs.modalities.get("ws", ("", 0))[1]}
"""
    text = f"""
listen = "{HOST}:{port}"
aet = "{GATEWAY_AET}"
pacs = "{PACS_AET}@{HOST}:{pacs.dicom_port}"
keys = "keys"
key_file = "master.key"
model = "tiny.onnx"
seed = "{seed_path()}"
spool = "spool"
cipher = "hardened"
status = "{HOST}:{status_port}"
min_free_bytes = 0
backoff = [0.1, 0.5]
{extra}
{allow}
{tls}
"""
    path = folder / "gateway.toml"
    path.write_text(text)
    return path


class GatewayProcess:
    """`dkg-gateway --config FILE` as its own process (SIGTERM drains it, SIGKILL does not)."""

    def __init__(self, config: Path, port: int, status_port: int, drain: float = 3.0):
        self.config, self.port, self.status_port, self.drain = config, port, status_port, drain
        self.log = config.parent / "gateway.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> GatewayProcess:
        log = open(self.log, "ab")  # noqa: SIM115 (the process keeps it)
        self.process = subprocess.Popen([sys.executable, "-m", "keras_dkg.gateway.cli", "--config", str(self.config),
                                         "--drain", str(self.drain)], stdout=log, stderr=log, cwd=ROOT,
                                        start_new_session=True)
        try:
            wait_port(self.port, timeout=60, process=self.process)
            wait_port(self.status_port, timeout=10, process=self.process)
        except (RuntimeError, TimeoutError):
            self.stop(signal.SIGKILL)
            raise
        return self

    def status(self) -> dict:
        with urllib.request.urlopen(f"http://{HOST}:{self.status_port}/status", timeout=10) as answer:
            return json.loads(answer.read())

    def wait_forwarded(self, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            status = self.status()
            if status["queue_depth"] == 0 or time.monotonic() > deadline:
                return status
            time.sleep(0.1)

    def stop(self, sig=signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.process is None:
            return 0
        self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self.process = None
        return code

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def dcmtk(tool: str, *args, timeout: float = 60.0, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([tool, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, **NODELAY_ENV})
    if check and result.returncode != 0:
        raise AssertionError(f"{tool} exited {result.returncode}: {result.stderr[-2000:]}")
    return result


def store(port: int, files, aet: str = MODALITY_AET, called: str = GATEWAY_AET, check: bool = True):
    """storescu: RLE files (name rle_*) in their own association proposing RLE Lossless (-xr)."""
    rle = [f for f in files if Path(f).name.startswith("rle")]
    plain = [f for f in files if f not in rle]
    result = None
    for group, options in ((plain, []), (rle, ["-xr"])):
        if group:
            result = dcmtk("storescu", *options, "-aet", aet, "-aec", called, HOST, port, *group, check=check)
            if result.returncode != 0:
                return result
    return result


def _certificate(name: str, key, issuer_name, issuer_key, ca: bool):
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer_name or subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=2))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        import ipaddress

        builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST))]),
                                        critical=False)
    return builder.sign(issuer_key or key, hashes.SHA256())


def make_pki(folder: Path) -> dict[str, Path]:
    """A CA, a gateway and a client certificate it signed, and a client signed by another CA (PEM files)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    folder.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}

    def save(name: str, key, cert) -> None:
        paths[f"{name}.key"] = folder / f"{name}.key"
        paths[f"{name}.crt"] = folder / f"{name}.crt"
        paths[f"{name}.key"].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                           serialization.PrivateFormat.TraditionalOpenSSL,
                                                           serialization.NoEncryption()))
        paths[f"{name}.crt"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    for ca_name, members in (("ca", ("gateway", "client")), ("rogue_ca", ("rogue",))):
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = _certificate(ca_name, ca_key, None, None, ca=True)
        save(ca_name, ca_key, ca_cert)
        for member in members:
            key = ec.generate_private_key(ec.SECP256R1())
            save(member, key, _certificate(member, key, ca_cert.subject, ca_key, ca=False))
    return paths
