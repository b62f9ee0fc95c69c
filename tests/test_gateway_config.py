"""The gateway's parts that need no servers: config checks, the access policy, the spool, and the
in-memory DICOM encrypt/decrypt it is built on (runtime.encryption)."""

from __future__ import annotations

import io

import numpy as np
import pytest

from keras_dkg.errors import InputError, IntegrityError, OutputError
from keras_dkg.gateway.access import AccessPolicy
from keras_dkg.gateway.config import config_from_dict, load_config
from keras_dkg.gateway.spool import Spool, SpoolFull
from tests import gateway_kit as kit

pydicom = pytest.importorskip("pydicom")
pytest.importorskip("cryptography")

BASE = {"listen": "127.0.0.1:11112", "aet": "DKG_GATEWAY", "pacs": "ORTHANC@127.0.0.1:4242", "keys": "k",
        "model": "m.onnx", "seed": "s.png", "spool": "sp",
        "allow": [{"ae": "CT1@10.0.0.5", "services": ["store"]},
                  {"ae": "WS1@10.0.0.7", "services": ["find", "get", "move"], "port": 11113}]}


def test_config_reads_every_key(tmp_path):
    path = tmp_path / "g.toml"
    path.write_text('listen = "127.0.0.1:104"\naet = "GW"\npacs = "PACS@10.1.1.1:4242"\nkeys = "keys"\n'
                    'model = "g.onnx"\nseed = "seed.dcm"\nspool = "spool"\ncipher = "xor"\nstatus = "127.0.0.1:8088"\n'
                    '[[allow]]\nae = "CT1@10.0.0.5"\nservices = ["store"]\n'
                    '[tls]\ncert = "c.crt"\nkey = "c.key"\nca = "ca.crt"\n')
    config = load_config(path)
    assert config.listen == ("127.0.0.1", 104) and config.pacs.port == 4242 and config.cipher == "xor"
    assert config.keys == tmp_path / "keys" and config.tls.ca == tmp_path / "ca.crt" and not config.tls.pacs
    assert config.allow[0].services == {"store", "echo"}
    assert config_from_dict(BASE).cipher == "hardened"  # the default for patient data
    engine = config_from_dict({**BASE, "backend": "onnxruntime", "precision": "fp32"})
    assert (engine.backend, engine.precision) == ("onnxruntime", "fp32")
    assert (config_from_dict(BASE).backend, config_from_dict(BASE).precision) == ("auto", "auto")


@pytest.mark.parametrize(("change", "message"), [
    ({"listen": "nowhere"}, "host:port"), ({"pacs": "ORTHANC@host"}, "AET@host:port"),
    ({"aet": "A" * 17}, "not an AE title"), ({"cipher": "rot13"}, "cipher must be"),
    ({"colour": "blue"}, "unknown key"), ({"status": "0.0.0.0:8088"}, "loopback"),
    ({"allow": [{"ae": "X@h", "services": ["delete"]}]}, "unknown service"), ({"keys": None}, "'keys' is required"),
    ({"tls": {"cert": "c", "key": "k"}}, "'ca' is required"), ({"backoff": [1]}, "backoff"),
    ({"backend": "tensorrt"}, "backend must be one of auto, onnxruntime, openvino"),
    ({"precision": "fp8"}, "precision must be one of"),
])
def test_config_errors_name_the_key(change, message):
    raw = {k: v for k, v in {**BASE, **change}.items() if v is not None}
    with pytest.raises(InputError, match=message):
        config_from_dict(raw)


def test_access_policy_ties_each_ae_to_its_address():
    policy = AccessPolicy("DKG_GATEWAY", config_from_dict(BASE).allow)
    assert policy.association_refusal("DKG_GATEWAY", "CT1", "10.0.0.5") is None
    assert "not this gateway" in policy.association_refusal("OTHER", "CT1", "10.0.0.5")
    assert "not on the allow list" in policy.association_refusal("DKG_GATEWAY", "EVIL", "10.0.0.5")
    assert "not allowed from" in policy.association_refusal("DKG_GATEWAY", "CT1", "10.0.0.6")
    assert policy.service_refusal("store", "CT1", "10.0.0.5") is None
    assert policy.service_refusal("get", "CT1", "10.0.0.5") is not None
    assert policy.move_destination("WS1").port == 11113 and policy.move_destination("CT1") is None


def test_spool_is_keyed_by_uid_and_refuses_below_its_reserve(tmp_path):
    spool = Spool(tmp_path / "spool")
    first = spool.put("1.2.3", b"one")
    assert spool.put("1.2.3", b"two") == first and first.read_bytes() == b"two" and spool.depth() == 1
    (spool.queue / ".1.2.4.dcm.tmp.dcm").write_bytes(b"half")  # a write a crash cut short
    assert spool.pending() == [first]
    with pytest.raises(OutputError, match="not a valid UID"):
        spool.put("../../etc/passwd", b"x")
    with pytest.raises(SpoolFull):
        Spool(tmp_path / "spool2", min_free_bytes=1 << 62).put("1.2.5", b"x")


def test_network_instance_round_trip_in_memory(tmp_path):
    """encrypt_dicom_bytes / decrypt_dicom_bytes: fixed file meta, key stored first, bit-exact back,
    a tampered element is an integrity error."""
    from keras_dkg.embedded import seed_path
    from keras_dkg.runtime.instances import (
        KeySource,
        decrypt_dicom_bytes,
        encrypt_dicom_bytes,
        instance_file_bytes,
    )
    from keras_dkg.runtime.keys.generator import KeyGenerator, load_seed
    from keras_dkg.runtime.keystore.custody import Credentials
    from keras_dkg.runtime.keystore.store import KeyStore

    kit.protected_store(tmp_path / "keys", tmp_path / "master.key")
    store = KeyStore(tmp_path / "keys", credentials=Credentials(key_file=str(tmp_path / "master.key")))
    keys = KeySource(KeyGenerator(kit.tiny_model(tmp_path / "tiny.onnx")), load_seed(seed_path())[0])
    for kind in ("ct", "us", "multiframe"):
        ds = kit.make_instance(kind, "1.2.3.4", 1)
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        body = buffer.getvalue()[132:]
        body = body[int.from_bytes(body[8:12], "little") + 12:]  # past the file meta group
        data = instance_file_bytes(body, ds.SOPClassUID, ds.SOPInstanceUID, "1.2.840.10008.1.2.1")
        encrypted = encrypt_dicom_bytes(data, keys, store, used_for=f"dicom:T@h/{ds.SOPInstanceUID}")
        assert store.find(encrypted.fingerprint) and encrypted.meta.cipher == "hardened"
        ciphertext = pydicom.dcmread(io.BytesIO(encrypted.data))
        assert ds.PixelData not in bytes(ciphertext.PixelData)
        plain, fingerprint = decrypt_dicom_bytes(encrypted.data, store)
        back = pydicom.dcmread(io.BytesIO(plain))
        assert fingerprint == encrypted.fingerprint and back.PixelData == ds.PixelData
        assert kit.same_instance(ds, back) == []
        ciphertext.PatientName = "Someone^Else"
        tampered = io.BytesIO()
        ciphertext.save_as(tampered, enforce_file_format=False)
        with pytest.raises(IntegrityError):
            decrypt_dicom_bytes(tampered.getvalue(), store)
    assert np.all([r["action"] in ("init", "encrypt") for r in store.audit.check()[1]])


def test_a_network_instance_that_fails_after_its_key_is_stored_gives_the_use_back(tmp_path, monkeypatch):
    """The key is stored with its use before the ciphertext exists; when the ciphertext cannot be made,
    the use is given back (audit `release`) and the key stays, unused: never a use without a ciphertext."""
    from keras_dkg.embedded import seed_path
    from keras_dkg.errors import OutputError
    from keras_dkg.runtime import instances
    from keras_dkg.runtime.keys.generator import KeyGenerator, load_seed
    from keras_dkg.runtime.keystore.store import KeyStore

    store = KeyStore(tmp_path / "keys", create=True)
    keys = instances.KeySource(KeyGenerator(kit.tiny_model(tmp_path / "tiny.onnx")), load_seed(seed_path())[0])
    ds = kit.make_instance("ct", "1.2.3.4", 1)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)

    def fails(*args, **kwargs):
        raise OutputError("the ciphertext could not be made")

    monkeypatch.setattr(instances, "encrypt_dicom", fails)
    with pytest.raises(OutputError, match="could not be made"):
        instances.encrypt_dicom_bytes(buffer.getvalue(), keys, store, used_for=f"dicom:T@h/{ds.SOPInstanceUID}")
    [entry] = store.entries()
    assert entry["used_for"] == []  # the key is kept, its use given back
    actions = [record["action"] for record in store.audit.check()[1]]
    assert actions[-2:] == ["encrypt", "release"], actions
