"""docs/img/gateway_orthanc.png: one CT slice as Orthanc shows it (its own rendered preview, the
PNG its web page displays) after it came in through `dkg gateway`, beside the same slice
retrieved through the gateway (C-GET, decrypted).

    python tools/gateway_picture.py [--model G.onnx] [--out docs/img/gateway_orthanc.png]

Starts its own Orthanc and gateway on loopback ports (tests/gateway_kit.py); needs Orthanc, DCMTK
and matplotlib. The slice is pydicom's CT_small.dcm (128² 16-bit); the seed is the embedded one.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests import gateway_kit as kit  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="generator .onnx (default: the tests' tiny stand-in)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "img" / "gateway_orthanc.png"))
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pydicom
    from pydicom.data import get_testdata_file

    work = Path(tempfile.mkdtemp(prefix="gateway_picture_"))
    ports = {name: kit.free_port() for name in ("gateway", "status")}
    pacs = kit.Orthanc(work / "orthanc", {"gateway": (kit.GATEWAY_AET, ports["gateway"])})
    pacs.start()
    config = kit.gateway_config(work, pacs, ports["gateway"], ports["status"])
    if args.model:
        config.write_text(config.read_text().replace('model = "tiny.onnx"', f'model = "{Path(args.model).resolve()}"'))
    gateway = kit.GatewayProcess(config, ports["gateway"], ports["status"]).start()
    try:
        source = Path(get_testdata_file("CT_small.dcm"))
        original = pydicom.dcmread(source)
        kit.store(gateway.port, [source])
        gateway.wait_forwarded()
        orthanc_id = pacs.instances()[str(original.SOPInstanceUID)][0]
        preview = plt.imread(io.BytesIO(pacs.rest(f"/instances/{orthanc_id}/preview")), format="png")
        out = work / "back"
        out.mkdir()
        kit.dcmtk("getscu", "-S", "-aet", kit.WORKSTATION_AET, "-aec", kit.GATEWAY_AET, kit.HOST, gateway.port,
                  "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={original.StudyInstanceUID}", "-od", out)
        back = pydicom.dcmread(next(out.iterdir()))
        assert back.PixelData == original.PixelData
    finally:
        gateway.stop()
        pacs.stop()
    figure, axes = plt.subplots(1, 2, figsize=(8, 4.3))
    axes[0].imshow(preview, cmap="gray")
    axes[0].set_title("in Orthanc (its own preview):\nthe ciphertext", fontsize=10)
    axes[1].imshow(back.pixel_array, cmap="gray")
    axes[1].set_title("C-GET through dkg gateway:\ndecrypted, bit-identical", fontsize=10)
    for axis in axes:
        axis.axis("off")
    figure.suptitle(f"{original.PatientName} · SOP Instance {str(original.SOPInstanceUID)[-12:]} · cipher hardened",
                    fontsize=9)
    figure.tight_layout(rect=(0, 0, 1, 0.92))
    figure.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
