"""Push a compressed model (and its ONNX variants) to the Hub in one commit, with a card rendered from what was
recorded in the model directory.

    fastformers-hf push --model_dir runs/pruned --repo_id you/minilm-sst2-pruned \\
        --onnx_dir runs/onnx-int8 --license apache-2.0 --language en

Set HF_TOKEN (or pass --token) with write access; HF_ENDPOINT picks another Hub. Preview the card without pushing
with --dry_run. Load the result with AutoModelForSequenceClassification.from_pretrained(repo_id) or
ORTModelForSequenceClassification.from_pretrained(repo_id, subfolder="onnx").
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..utils.argparsing import HfArgumentParser  # not transformers': that imports torch (slow --help)


@dataclass
class PushArgs:
    model_dir: str = field(metadata={"help": "A save_pretrained folder (weights, config, tokenizer, measurements)."})
    repo_id: str = field(metadata={"help": "Hub repo, 'namespace/name'; created if missing."})
    onnx_dir: str = field(default=None, metadata={"help": "An ONNX variant folder, pushed as onnx/."})
    private: bool = field(default=False, metadata={"help": "Create the repo private."})
    revision: str = field(default=None, metadata={"help": "Branch to push to (created from main if missing)."})
    token: str = field(default=None, metadata={"help": "Write token (default: HF_TOKEN or the saved login)."})
    license: str = field(default=None, metadata={"help": "License id for the card; follow your teacher's."})
    language: str = field(default=None, metadata={"help": "Language code for the card, e.g. en."})
    dry_run: bool = field(default=False, metadata={"help": "Check the folder and print the card; push nothing."})


def main(argv=None) -> int:
    (args,) = HfArgumentParser(PushArgs).parse_args_into_dataclasses(args=argv)
    from hub_cards import render_card  # only after the flags are parsed

    from ..hub import push_to_hub, verify_model_dir
    fields = {k: v for k, v in dict(license=args.license, language=args.language).items() if v}
    if args.dry_run:
        record = verify_model_dir(args.model_dir)
        import tempfile

        from ..hub_checks import card_preview_source

        with tempfile.TemporaryDirectory() as staging:  # the card the push would commit
            print(render_card(card_preview_source(args.model_dir, staging),
                              folders={"onnx": args.onnx_dir} if args.onnx_dir else None, model_id=args.repo_id,
                              **fields))
        print(f"\n[dry run] {args.model_dir} checks out (loads with {record['loads_with']}); nothing was pushed.")
        return 0
    url = push_to_hub(args.model_dir, args.repo_id, private=args.private, token=args.token, revision=args.revision,
                      onnx_dir=args.onnx_dir, card_fields=fields)
    print(f"pushed: {url}")
    return 0
