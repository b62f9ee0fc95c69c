"""`dkg-keys`: a key store's custody — init, list, show, verify, rotate, export, import, protect, audit.

    dkg-keys init DIR [--key-file F]          a new protected store (passphrase: DKG_KEYSTORE_PASSPHRASE or a prompt)
    dkg-keys protect DIR                      seal a plain store in place
    dkg-keys list DIR [--json]                dkg-keys show DIR FINGERPRINT
    dkg-keys verify DIR                       every key opens and matches its record (exit 0 only when all is well)
    dkg-keys rotate DIR [--new-key-file F]    new master key (DKG_KEYSTORE_NEW_PASSPHRASE or a prompt); rotate and
                                              protect wait --wait SECONDS for the store's writers to end
    dkg-keys export DIR -o BUNDLE (--fingerprint FP ... | --for CIPHERTEXT ...)
    dkg-keys import DIR BUNDLE                dkg-keys audit DIR [--json]

A bundle is a protected store of its own (passphrase DKG_KEYSTORE_BUNDLE_PASSPHRASE or a
prompt, or --bundle-key-file F). Exit codes: 0 all well; 1 verify or audit found a problem;
2 bad arguments or a store that does not open (wrong passphrase: one line, nothing written).
"""

from __future__ import annotations

import argparse
import json
import sys

from keras_dkg.errors import InputError, run_cli
from keras_dkg.options import add_output, add_store_key_file
from keras_dkg.runtime.keystore.locks import DEFAULT_WAIT_S

EPILOG = "docs/keys.md, section Custody: the store's layout, the threat model and recovery after a killed command."


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="dkg-keys", description=__doc__.split("\n\n")[0], epilog=EPILOG,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = top.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.add_argument("store", metavar="DIR", help="the key store folder")
        add_store_key_file(sub)
        return sub

    command("init", "make a new protected key store (a --key-file that does not exist is created)")
    protect = command("protect", "seal a plain key store in place, atomically (again: finish an interrupted one)")
    listing = command("list", "one line per key: fingerprint, shape, created, uses, first plaintext")
    listing.add_argument("--json", action="store_true", help="JSON lines instead")
    show = command("show", "one key's index entry and record (no key bytes)")
    show.add_argument("fingerprint", metavar="FINGERPRINT", help="the fingerprint or its first 8+ hex digits")
    command("verify", "check that every key opens and matches its fingerprint and the index (exit 0: all well)")
    rotate = command("rotate", "a new master key: every data key rewrapped, ciphertexts untouched")
    add_store_key_file(rotate, dest="new_key_file", flag="--new-key-file", what="store's new")
    for sub in (protect, rotate):
        sub.add_argument("--wait", type=float, default=DEFAULT_WAIT_S, metavar="SECONDS",
                         help="how long to wait for the store's writers (batches, encryptions) to end "
                              "(default: %(default)s)")
    export = command("export", "copy selected keys into a new protected bundle store to share one study")
    add_output(export, "the bundle folder (must not exist)", required=True)
    export.add_argument("--fingerprint", action="append", default=[], metavar="FP", help="a key (repeatable)")
    export.add_argument("--for", dest="ciphertexts", nargs="+", default=[], metavar="CIPHERTEXT",
                        help="the keys of these ciphertexts")
    add_store_key_file(export, dest="bundle_key_file", flag="--bundle-key-file", what="bundle")
    imported = command("import", "add a bundle's keys to this store")
    imported.add_argument("bundle", metavar="BUNDLE", help="a bundle folder from dkg-keys export")
    add_store_key_file(imported, dest="bundle_key_file", flag="--bundle-key-file", what="bundle")
    audit = command("audit", "check the audit log's hash chain and list its records (exit 0: chain intact)")
    audit.add_argument("--json", action="store_true", help="the records as JSON lines")
    return top


def _credentials(key_file, new: bool = False):
    """The store's credentials; a new passphrase (init, protect) is asked twice at a prompt."""
    from keras_dkg.runtime.keystore.custody import Credentials

    return Credentials.from_environment(key_file, confirm=new)


def _open(args):
    from keras_dkg.runtime.keystore.custody import require_protected
    from keras_dkg.runtime.keystore.store import KeyStore

    credentials = _credentials(args.key_file)
    if args.key_file:  # a --key-file for a plain store is refused, never ignored (the environment is not checked
        require_protected(args.store, credentials)  # here: read-only commands on plain stores keep working)
    return KeyStore(args.store, credentials=credentials)


def _uses(entry: dict) -> str:
    uses = entry.get("used_for", [])
    return f"{len(uses)} use(s)" + (f", {uses[0].get('plaintext')}" if uses else "")


def _fingerprints_of(ciphertexts: list[str]) -> list[str]:
    from keras_dkg.runtime.formats.registry import open_ciphertext

    return [open_ciphertext(path).meta.key_fingerprint for path in ciphertexts]


def run(args: argparse.Namespace) -> int:
    from keras_dkg.runtime.keystore import admin, custody

    name = args.command
    if name == "init":
        store = admin.init_store(args.store, _credentials(args.key_file, new=True))
        print(f"made protected key store {args.store} ({store.vault.manifest['protection']}, "
              f"{store.vault.manifest['kdf']['name']})")
        return 0
    if name == "protect":
        result = admin.protect_store(args.store, _credentials(args.key_file, new=True), wait_s=args.wait)
        print(f"protected {args.store}: {result['keys']} key(s) sealed; the plain files are deleted "
              "(deleting does not erase a disk: see docs/keys.md)")
        return 0
    if name == "rotate":
        new = custody.Credentials.from_environment(args.new_key_file, passphrase_env=custody.NEW_PASSPHRASE_ENV,
                                                   what="new key store passphrase", confirm=True)
        result = admin.rotate_store(args.store, _credentials(args.key_file), new, wait_s=args.wait)
        print(f"rotated {args.store}: generation {result['generation']}, {result['keys']} data key(s) rewrapped")
        return 0
    store = _open(args)
    if name == "list":
        for entry in store.entries():
            if args.json:
                print(json.dumps(entry, sort_keys=True))
            else:
                print(f"{entry['fingerprint'][:23]}  {'x'.join(map(str, entry.get('shape') or []))}  "
                      f"{entry.get('created')}  {_uses(entry)}")
        return 0
    if name == "show":
        print(json.dumps(store.find(store.resolve(args.fingerprint)), indent=2, sort_keys=True))
        return 0
    if name == "verify":
        found = admin.verify_store(store)
        for line in found.notes:
            print(f"note: {line}")
        for line in found.errors:
            print(f"dkg-keys: problem: {line}", file=sys.stderr)
        print(f"{args.store}: {found.keys} key(s), {len(found.errors)} problem(s)"
              f"{'' if store.protected else ' (a plain store: keys in the clear)'}")
        return 1 if found.errors else 0
    if name == "export":
        fingerprints = [store.resolve(fp) for fp in args.fingerprint] + _fingerprints_of(args.ciphertexts)
        bundle = custody.Credentials.from_environment(args.bundle_key_file,
                                                      passphrase_env=custody.BUNDLE_PASSPHRASE_ENV,
                                                      what="bundle passphrase", confirm=True)
        chosen = admin.export_keys(store, fingerprints, args.output, bundle)
        print(f"exported {len(chosen)} key(s) to {args.output}")
        return 0
    if name == "import":
        bundle = custody.Credentials.from_environment(args.bundle_key_file,
                                                      passphrase_env=custody.BUNDLE_PASSPHRASE_ENV,
                                                      what="bundle passphrase")
        added, present = admin.import_keys(store, args.bundle, bundle)
        print(f"imported {added} key(s) into {args.store} ({present} already there)")
        return 0
    if name == "audit":
        problems, records, count = admin.audit_store(store)
        if args.json:
            for record in records:
                print(json.dumps(record, sort_keys=True))
        for line in problems:
            print(f"dkg-keys: broken: {line}", file=sys.stderr)
        print(f"{args.store}: {count} audit record(s), chain {'BROKEN' if problems else 'intact'}")
        return 1 if problems else 0
    raise InputError(f"unknown command {name!r}")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return run_cli("dkg-keys", lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
