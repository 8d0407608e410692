"""Tiny random masked-LM checkpoints built on the fly: small trained vocabularies, short position tables."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

CORPUS = [
    "what is splade and how do learned sparse retrieval models expand queries with related terms",
    "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France.",
    "An inverted index answers queries quickly when documents are weighted sparse vectors.",
    "The Manhattan Project produced the first nuclear weapons during World War II.",
    "Tokyo is the capital of Japan and one of the largest cities in the world.",
] * 20
MAX_LENGTH = 64  # usable tokens per text in every tiny model


def wordpiece(vocab_size: int = 300) -> Tokenizer:
    """BERT-style: [PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4, then trained WordPieces."""
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(CORPUS, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials))
    tok.post_processor = processors.BertProcessing(("[SEP]", 3), ("[CLS]", 2))
    return tok


def byte_bpe(vocab_size: int = 400) -> Tokenizer:
    """RoBERTa-style byte-level BPE: <s>=0, <pad>=1, </s>=2, <unk>=3, <mask>=4."""
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    return tok


def line_level() -> Tokenizer:
    """Word-level over whole lines (BERT-style specials, as `wordpiece`): a text without a newline is one token,
    so any two short texts tokenize to the same length, e.g. "what is a test" and "hello"."""
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    lines = sorted(set(CORPUS)) + ["what is splade", "hello"]
    tok = Tokenizer(models.WordLevel({t: i for i, t in enumerate(specials + lines)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Split("\n", behavior="removed")
    tok.post_processor = processors.BertProcessing(("[SEP]", 3), ("[CLS]", 2))
    return tok


def save_tokenizer(tok: Tokenizer, folder: Path, *, bpe: bool) -> None:
    from transformers import PreTrainedTokenizerFast

    names = (dict(bos_token="<s>", eos_token="</s>", cls_token="<s>", sep_token="</s>", pad_token="<pad>",
                  unk_token="<unk>", mask_token="<mask>") if bpe else
             dict(cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]", unk_token="[UNK]", mask_token="[MASK]"))
    PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=MAX_LENGTH, **names).save_pretrained(folder)


def build(arch: str, folder: Path, tokenizers: dict[str, Tokenizer]) -> Path:
    """Save a random `arch` MLM (2 layers, hidden 32) with its tokenizer into `folder`."""
    import transformers as tf

    torch.manual_seed(0)
    small = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    bpe = arch in ("roberta", "xlm-roberta", "mpnet")
    tok = tokenizers["bpe" if bpe else "wordpiece"]
    vocab = tok.get_vocab_size()
    if arch == "bert":
        model = tf.BertForMaskedLM(tf.BertConfig(vocab_size=vocab, max_position_embeddings=MAX_LENGTH, **small))
    elif arch == "roberta":
        model = tf.RobertaForMaskedLM(tf.RobertaConfig(vocab_size=vocab, max_position_embeddings=MAX_LENGTH + 2,
                                                       pad_token_id=1, bos_token_id=0, eos_token_id=2, **small))
    elif arch == "xlm-roberta":
        model = tf.XLMRobertaForMaskedLM(tf.XLMRobertaConfig(vocab_size=vocab, max_position_embeddings=MAX_LENGTH + 2,
                                                             pad_token_id=1, bos_token_id=0, eos_token_id=2, **small))
    elif arch == "mpnet":
        model = tf.MPNetForMaskedLM(tf.MPNetConfig(vocab_size=vocab, max_position_embeddings=MAX_LENGTH + 2,
                                                   pad_token_id=1, bos_token_id=0, eos_token_id=2, **small))
    elif arch == "modernbert":
        model = tf.ModernBertForMaskedLM(tf.ModernBertConfig(
            vocab_size=vocab, max_position_embeddings=MAX_LENGTH, pad_token_id=0, cls_token_id=2, sep_token_id=3,
            bos_token_id=2, eos_token_id=3, global_attn_every_n_layers=2, local_attention=16, **small))
    elif arch == "distilbert":
        model = tf.DistilBertForMaskedLM(tf.DistilBertConfig(vocab_size=vocab, dim=32, hidden_dim=64, n_layers=2,
                                                             n_heads=2, max_position_embeddings=MAX_LENGTH))
    else:
        raise ValueError(arch)
    model.save_pretrained(folder)
    save_tokenizer(tok, folder, bpe=bpe)
    return folder


ST5_MAX_SEQ_LENGTH = 32
ST5_PROMPTS = {"query": "query: ", "document": "passage: "}


def build_st5_folder(folder: Path) -> Path:
    """A SparseEncoder folder in the layout sentence-transformers 5.x saves, written by hand (no
    sentence-transformers needed): `MLMTransformer` at the root (`max_seq_length` in sentence_bert_config.json),
    `SpladePooling` in 1_SpladePooling (`word_embedding_dimension`), prompts in config_sentence_transformers.json.

    tests/integration/fixtures/st5-splade was made by this function (a random 2-layer BERT, vocabulary 200:
    ~150 KB).
    """
    build("bert", folder, {"wordpiece": wordpiece(200)})
    config = json.loads((folder / "config.json").read_text())
    config.update(transformers_version="4.56.1", torch_dtype=config.pop("dtype", "float32"))  # as 4.x wrote it
    vocab = config["vocab_size"]
    specials = dict(cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]", unk_token="[UNK]", mask_token="[MASK]")
    files = {
        "config.json": config,
        "tokenizer_config.json": {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": MAX_LENGTH,
                                  "clean_up_tokenization_spaces": False, **specials},
        "special_tokens_map.json": specials,
        "modules.json": [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.sparse_encoder.models.MLMTransformer"},
            {"idx": 1, "name": "1", "path": "1_SpladePooling",
             "type": "sentence_transformers.sparse_encoder.models.SpladePooling"},
        ],
        "sentence_bert_config.json": {"max_seq_length": ST5_MAX_SEQ_LENGTH, "do_lower_case": False},
        "1_SpladePooling/config.json": {"pooling_strategy": "max", "activation_function": "relu",
                                        "word_embedding_dimension": vocab},
        "config_sentence_transformers.json": {
            "model_type": "SparseEncoder",
            "__version__": {"sentence_transformers": "5.1.0", "transformers": "4.56.1", "pytorch": "2.8.0"},
            "prompts": ST5_PROMPTS, "default_prompt_name": None, "similarity_fn_name": "dot"},
    }
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(json.dumps(data, indent=2) + "\n")
    return folder


def move_mlm_to_subfolder(folder: Path, sub: str) -> None:
    """Rewrite a saved SparseEncoder so its MLM lives in the subfolder `sub` (as some published models do)."""
    import shutil

    (folder / sub).mkdir()
    for f in list(folder.iterdir()):
        if f.is_file() and f.name not in ("modules.json", "config_sentence_transformers.json", "README.md"):
            shutil.move(str(f), folder / sub / f.name)
    modules = json.loads((folder / "modules.json").read_text())
    modules[0]["path"] = sub
    (folder / "modules.json").write_text(json.dumps(modules))

