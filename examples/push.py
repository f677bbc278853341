"""Push a compressed model (and its ONNX variant) to the Hub in one commit, with a model card built from what was
measured and recorded in the folder; then read its compression record back from the Hub.

    python examples/push.py --model_dir runs/sst2-pruned --onnx_dir runs/sst2-onnx/best \
        --repo_id you/minilm-sst2-pruned --license apache-2.0 --language en [--dry_run]

The card is printed first; ``--dry_run`` stops there (after checking that the folder loads and that its recorded
shape matches its weights). The token comes from ``--token``, ``HF_TOKEN`` or ``hf auth login``; another Hub is
picked with ``HF_ENDPOINT``, set before Python starts (huggingface_hub reads it at import). Users then load it with
``AutoModelForSequenceClassification.from_pretrained(repo_id)`` or
``ORTModelForSequenceClassification.from_pretrained(repo_id, subfolder="onnx")``. The same as a command:
``fastformers-hf push``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from huggingface_hub import constants
from transformers import HfArgumentParser

from fastformers_hf import compression_record_from_hub, push_to_hub, verify_model_dir

from hub_cards import render_card


@dataclass
class PushArguments:
    model_dir: str = field(metadata={"help": "A save_pretrained folder (weights, config, tokenizer, measurements)."})
    repo_id: str = field(metadata={"help": "Hub repo 'namespace/name'; created if missing."})
    onnx_dir: Optional[str] = field(default=None, metadata={"help": "An ONNX variant folder, uploaded as onnx/."})
    private: bool = field(default=False, metadata={"help": "Create the repo private."})
    revision: Optional[str] = field(default=None, metadata={"help": "Branch to push to (created from main if missing)."})
    token: Optional[str] = field(default=None, metadata={"help": "Write token (default: HF_TOKEN or the saved login)."})
    license: Optional[str] = field(default=None, metadata={"help": "License id for the card; follow your teacher's."})
    language: Optional[str] = field(default=None, metadata={"help": "Language code for the card, e.g. en."})
    dry_run: bool = field(default=False, metadata={"help": "Check the folder and print the card; push nothing."})


def main(argv=None) -> dict:
    (args,) = HfArgumentParser(PushArguments).parse_args_into_dataclasses(args=argv)
    card_fields = {k: v for k, v in dict(license=args.license, language=args.language).items() if v}
    folders = {"onnx": args.onnx_dir} if args.onnx_dir else None

    import tempfile

    from fastformers_hf.hub_checks import card_preview_source

    with tempfile.TemporaryDirectory() as staging:  # the card the push commits (pruned shapes get the modeling file)
        card = render_card(card_preview_source(args.model_dir, staging), folders=folders,
                           model_id=args.repo_id, **card_fields)
    print(card)
    if args.dry_run:
        record = verify_model_dir(args.model_dir)  # loads it as a Hub user will, compares shape and weights
        print(f"\n[dry run] {args.model_dir} checks out (loads with {record['loads_with']}); nothing was pushed.")
        return {"card": card, "pushed": False}

    url = push_to_hub(args.model_dir, args.repo_id, private=args.private, token=args.token, revision=args.revision,
                      onnx_dir=args.onnx_dir, card_fields=card_fields)
    print(f"\npushed to {constants.ENDPOINT}: {url}")
    record = compression_record_from_hub(args.repo_id, revision=args.revision, token=args.token)
    print(f"on the Hub: {record['num_layers']} layers, heads {record['heads_per_layer']}, FFN "
          f"{record['ffn_width_per_layer']}; recipe {' -> '.join(s['step'] for s in record['steps'])}")
    return {"card": card, "pushed": True, "url": str(url), "record": record}


if __name__ == "__main__":
    main()
