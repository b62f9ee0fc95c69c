"""`dkg gateway` under load: C-STORE instances/s and latency through the gateway beside storescu -> Orthanc
directly and beside a pass-through forwarder without encryption; C-GET through the gateway beside a
direct C-GET. One run, one Orthanc, the same instances, TCP_NODELAY everywhere.

    python tools/bench_gateway.py [--senders 4] [--instances 250] [--side 512] [--model G.onnx]

Each sender is its own process with one association (pynetdicom, TCP_NODELAY set on its
socket) and times every C-STORE from request to response: p50/p99 latency. Rows:
  storescu direct   `storescu` processes (DCMTK, TCP_NODELAY=1) straight to Orthanc: instances/s only
  direct            the senders straight to Orthanc
  pass-through      the senders -> a pynetdicom forwarder that C-STOREs each instance to Orthanc
                    before it answers (no encryption, no spool)
  gateway           the senders -> `dkg gateway` (fresh key per instance, hardened cipher, protected
                    key store, spool fsync, then Success); "end-to-end" counts until the spool is
                    forwarded to Orthanc too
Instances: CT-sized, `--side`² 16-bit (12 stored), uncompressed. Orthanc is emptied between rows.
Without --model an untrained full-size generator (6 residual blocks) is exported to ONNX in a
child process (tools/bench_batch.py's export_model): key generation costs what it would in use.
Needs Orthanc and DCMTK (`make servers`).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests import gateway_kit as kit  # noqa: E402 (Orthanc, instances, gateway process: shared with the tests)

PASS_AET = "PASSTHRU"


def _nodelay(assoc) -> None:
    sock = assoc.dul.socket.socket if assoc.dul.socket is not None else None
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def sender(port: int, called: str, folder: str, tag: str, out, go) -> None:
    """One association; C-STORE every file of `folder` with fresh UIDs (tag) once `go` is set; send back
    latencies and the wall-clock span (loading and associating are not timed)."""
    from pydicom import dcmread
    from pydicom.uid import generate_uid
    from pynetdicom import AE

    datasets = [dcmread(p) for p in sorted(Path(folder).iterdir())]
    for ds in datasets:
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[tag, str(ds.SOPInstanceUID)])
        ds.SeriesInstanceUID = generate_uid(entropy_srcs=[tag, folder])
    ae = AE(ae_title=kit.MODALITY_AET if called != kit.PACS_AET else kit.DIRECT_AET)
    ae.add_requested_context(datasets[0].SOPClassUID, "1.2.840.10008.1.2.1")
    assoc = ae.associate(kit.HOST, port, ae_title=called)
    _nodelay(assoc)
    latencies, failed = [], 0
    out.put("ready")
    go.wait()
    began = time.time()
    for ds in datasets:
        if not assoc.is_established:  # lost: count the rest as failed, do not hang the bench
            failed += 1
            continue
        started = time.perf_counter()
        status = assoc.send_c_store(ds)
        latencies.append(time.perf_counter() - started)
        failed += int(status is None or "Status" not in status or status.Status != 0)
    ended = time.time()
    if assoc.is_established:
        assoc.release()
    out.put((latencies, failed, str(datasets[0].SeriesInstanceUID), began, ended))


def run_senders(port: int, called: str, folders: list[Path], tag: str) -> dict:
    queue, go = multiprocessing.Queue(), multiprocessing.Event()
    processes = [multiprocessing.Process(target=sender, args=(port, called, str(f), f"{tag}{n}", queue, go))
                 for n, f in enumerate(folders)]
    for p in processes:
        p.start()
    if not all(queue.get(timeout=600) == "ready" for _ in processes):
        raise SystemExit("bench_gateway: a sender did not start")
    go.set()
    results = [queue.get(timeout=1800) for _ in processes]
    seconds = max(r[4] for r in results) - min(r[3] for r in results)
    for p in processes:
        p.join()
    latencies = np.concatenate([r[0] for r in results]) * 1000
    return {"count": len(latencies), "seconds": seconds, "rate": len(latencies) / seconds,
            "p50": float(np.percentile(latencies, 50)), "p99": float(np.percentile(latencies, 99)),
            "failed": sum(r[1] for r in results), "series": [r[2] for r in results],
            "began": min(r[3] for r in results)}


def passthrough(port: int, pacs: kit.Orthanc) -> object:
    """A pynetdicom SCP that forwards each instance to Orthanc before answering (no encryption)."""
    from pynetdicom import AE, AllStoragePresentationContexts, evt

    local = threading.local()

    def upstream(sop_class):
        if getattr(local, "assoc", None) is None or not local.assoc.is_established:
            ae = AE(ae_title=kit.GATEWAY_AET)
            ae.add_requested_context(sop_class, "1.2.840.10008.1.2.1")
            local.assoc = ae.associate(kit.HOST, pacs.dicom_port, ae_title=kit.PACS_AET)
            _nodelay(local.assoc)
        return local.assoc

    def on_store(event):
        ds = event.dataset
        ds.file_meta = event.file_meta
        status = upstream(ds.SOPClassUID).send_c_store(ds)
        return status.Status if status is not None and "Status" in status else 0xA700

    ae = AE(ae_title=PASS_AET)
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(context.abstract_syntax, "1.2.840.10008.1.2.1")
    handlers = [(evt.EVT_CONN_OPEN, lambda event: _nodelay(event.assoc)), (evt.EVT_C_STORE, on_store)]
    ae.require_called_aet = False
    return ae.start_server((kit.HOST, port), block=False, evt_handlers=handlers)


def storescu_direct(pacs: kit.Orthanc, folders: list[Path]) -> dict:
    started = time.perf_counter()
    processes = [subprocess.Popen(["storescu", "-aet", kit.DIRECT_AET, "-aec", kit.PACS_AET, kit.HOST,
                                   str(pacs.dicom_port), "+sd", str(f)], env={**os.environ, **kit.NODELAY_ENV},
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for f in folders]
    codes = [p.wait() for p in processes]
    seconds = time.perf_counter() - started
    count = sum(len(list(f.iterdir())) for f in folders)
    return {"count": count, "seconds": seconds, "rate": count / seconds, "failed": sum(c != 0 for c in codes)}


def get_rate(port: int, called: str, aet: str, series: str, out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    kit.dcmtk("getscu", "-S", "-aet", aet, "-aec", called, kit.HOST, port, "-k", "QueryRetrieveLevel=SERIES",
              "-k", f"SeriesInstanceUID={series}", "-od", out, timeout=1800)
    seconds = time.perf_counter() - started
    count = len(list(out.iterdir()))
    shutil.rmtree(out)
    return {"count": count, "seconds": seconds, "rate": count / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--instances", type=int, default=250, help="instances per sender (default 250)")
    parser.add_argument("--side", type=int, default=512, help="rows = columns of each 16-bit instance (default 512)")
    parser.add_argument("--model", help="generator .onnx (default: export an untrained full-size one); 'tiny': "
                        "y = sin(53.7 x), the tests' stand-in (isolates the gateway's own cost from the GAN's)")
    parser.add_argument("--work", help="working folder (default: a temporary one, removed)")
    args = parser.parse_args()
    why = kit.servers_missing()
    if why:
        sys.exit(f"bench_gateway: {why}")
    work = Path(args.work or tempfile.mkdtemp(prefix="bench_gateway_"))
    work.mkdir(parents=True, exist_ok=True)
    if args.model == "tiny":
        model = kit.tiny_model(work / "tiny.onnx")
    elif args.model:
        model = Path(args.model)
    else:
        sys.path.insert(0, str(ROOT / "tools"))
        from bench_batch import export_model

        model = export_model(work, 6)
    folders = []
    for n in range(args.senders):
        folder = work / f"sender{n}"
        if not folder.exists():
            kit.write_study(folder, kinds=("ct",), count=args.instances, side=args.side, seed=n)
        folders.append(folder)
    ports = {name: kit.free_port() for name in ("gateway", "status", "pass", "ws")}
    pacs = kit.Orthanc(work / "orthanc", {"gateway": (kit.GATEWAY_AET, ports["gateway"]),
                                          "pass": (PASS_AET, ports["pass"]), "direct": (kit.DIRECT_AET, ports["ws"])})
    pacs.start()
    rows = {}
    try:
        rows["storescu direct"] = storescu_direct(pacs, folders)
        pacs.clear()
        rows["direct"] = run_senders(pacs.dicom_port, kit.PACS_AET, folders, "direct")
        direct_series = rows["direct"]["series"][0]
        direct_get = get_rate(pacs.dicom_port, kit.PACS_AET, kit.DIRECT_AET, direct_series, work / "get_direct")
        pacs.clear()
        server = passthrough(ports["pass"], pacs)
        rows["pass-through"] = run_senders(ports["pass"], PASS_AET, folders, "pass")
        server.shutdown()
        pacs.clear()
        config = kit.gateway_config(work / "node", pacs, ports["gateway"], ports["status"],
                                    extra=f"forwarders = {args.senders}")
        (work / "node" / "tiny.onnx").unlink(missing_ok=True)
        text = config.read_text().replace('model = "tiny.onnx"', f'model = "{model.resolve()}"')
        config.write_text(text.replace(f'ae = "{kit.WORKSTATION_AET}@', f'ae = "{kit.DIRECT_AET}@'))
        gateway = kit.GatewayProcess(config, ports["gateway"], ports["status"]).start()
        try:
            rows["gateway"] = run_senders(ports["gateway"], kit.GATEWAY_AET, folders, "gateway")
            gateway.wait_forwarded(timeout=1800)
            end_to_end = time.time() - rows["gateway"]["began"]
            gateway_get = get_rate(ports["gateway"], kit.GATEWAY_AET, kit.DIRECT_AET, rows["gateway"]["series"][0],
                                   work / "get_gateway")
            in_orthanc = len(pacs.instances())
        finally:
            gateway.stop()
    finally:
        pacs.stop()
    total = args.senders * args.instances
    mb = args.side * args.side * 2 / 1e6
    print(f"\n{args.senders} senders x {args.instances} instances of {args.side}x{args.side} 16-bit ({mb:.2f} MB), "
          f"model {model.name}, cipher hardened, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}\n")
    print("| path | instances/s | p50 ms | p99 ms | failed | vs direct storescu |")
    print("|---|---:|---:|---:|---:|---:|")
    base = rows["storescu direct"]["rate"]
    for name, row in rows.items():
        p50 = f"{row['p50']:.1f}" if "p50" in row else "-"
        p99 = f"{row['p99']:.1f}" if "p99" in row else "-"
        print(f"| {name} | {row['rate']:.1f} | {p50} | {p99} | {row['failed']} | {row['rate'] / base:.2f}x |")
    print(f"| gateway end-to-end (until forwarded) | {total / end_to_end:.1f} | - | - | - | "
          f"{total / end_to_end / base:.2f}x |")
    print(f"\nC-GET of one series ({direct_get['count']} instances): direct {direct_get['rate']:.1f}/s, "
          f"through the gateway {gateway_get['rate']:.1f}/s ({gateway_get['count']} instances, decrypted) = "
          f"{gateway_get['rate'] / direct_get['rate']:.2f}x")
    print(f"Orthanc holds {in_orthanc} instances after the gateway row (expected {total})")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
