"""Model specs resolve to checkpoints that load through the Auto* path; bad specs fail clearly."""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import huggingface_hub
import pytest
import torch
from safetensors.torch import load_file
from transformers import LlamaConfig, LlamaForCausalLM

import bias_suite.models.tiny
from bias_suite.errors import CorruptCheckpointError, ModelNotFoundError, NotImageTextToTextError
from bias_suite.models.loading import load_model, parse_device, resolve_device, resolve_spec
from bias_suite.models.tiny import TINY_FAMILIES, ensure_checkpoint

OFFLINE_HINT = "download it elsewhere and pass the local directory"
HUB_DEADLINE_SECONDS = 15.0

EXPECTED_CLASSES = {
    "tiny-llava": ("LlavaForConditionalGeneration", "LlavaProcessor", "llava"),
    "tiny-qwen2.5-vl": ("Qwen2_5_VLForConditionalGeneration", "Qwen2_5_VLProcessor", "qwen2_5_vl"),
    "tiny-qwen2-vl": ("Qwen2VLForConditionalGeneration", "Qwen2VLProcessor", "qwen2_vl"),
    "tiny-gemma3": ("Gemma3ForConditionalGeneration", "Gemma3Processor", "gemma3"),
    "tiny-idefics3": ("Idefics3ForConditionalGeneration", "Idefics3Processor", "idefics3"),
}


def test_every_family_has_expectations():
    assert set(EXPECTED_CLASSES) == set(TINY_FAMILIES)


def test_alias_loads_the_real_architecture_and_processor(alias, load_tiny):
    loaded = load_tiny(alias)
    model_class, processor_class, model_type = EXPECTED_CLASSES[alias]
    assert type(loaded.model).__name__ == model_class
    assert type(loaded.processor).__name__ == processor_class
    assert loaded.info.model_type == model_type
    assert loaded.info.source == "alias"
    assert loaded.info.attn_implementation == "sdpa"
    assert loaded.info.n_layers == 4
    assert len(loaded.info.config_hash) == 16
    assert not loaded.model.training


def test_local_directory_loads_like_the_alias(alias, load_tiny):
    directory = ensure_checkpoint(alias)
    loaded = load_model(str(directory), device="cpu", dtype="float32")
    assert loaded.info.source == "local"
    assert loaded.info.config_hash == load_tiny(alias).info.config_hash


def test_tiny_checkpoints_are_saved_as_safetensors_with_tokenizer_and_processor(alias):
    files = {path.name for path in ensure_checkpoint(alias).iterdir()}
    assert "model.safetensors" in files and "pytorch_model.bin" not in files
    assert {"tokenizer.json", "tokenizer_config.json", "processor_config.json"} <= files


def test_tiny_checkpoints_are_deterministic_from_the_seed(tmp_path: Path):
    first = load_file(ensure_checkpoint("tiny-llava", tmp_path / "a", seed=3) / "model.safetensors")
    second = load_file(ensure_checkpoint("tiny-llava", tmp_path / "b", seed=3) / "model.safetensors")
    other = load_file(ensure_checkpoint("tiny-llava", tmp_path / "c", seed=4) / "model.safetensors")
    assert first.keys() == second.keys()
    assert all(torch.equal(first[name], second[name]) for name in first)
    assert not all(torch.equal(first[name], other[name]) for name in first)


def test_missing_directory_is_named(tmp_path: Path):
    missing = tmp_path / "no-such-checkpoint"
    with pytest.raises(ModelNotFoundError, match=r"no-such-checkpoint: no such directory"):
        resolve_spec(str(missing))


def test_unknown_alias_lists_the_built_in_ones():
    with pytest.raises(ModelNotFoundError, match=r"tiny-gpt.*tiny-llava, tiny-qwen2.5-vl"):
        resolve_spec("tiny-gpt")


def test_directory_without_config_is_refused(tmp_path: Path):
    with pytest.raises(ModelNotFoundError, match=r"has no config\.json"):
        resolve_spec(str(tmp_path))


def test_text_only_checkpoint_is_not_image_text_to_text(tmp_path: Path):
    config = LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1)
    LlamaForCausalLM(config).save_pretrained(tmp_path)
    with pytest.raises(NotImageTextToTextError, match=r"model_type 'llama' is not an image-text-to-text"):
        load_model(str(tmp_path), device="cpu")


def test_unreachable_hub_id_says_what_to_do(monkeypatch):
    # The hub library reads HF_HUB_OFFLINE at import time, so patch the constant it consults.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelNotFoundError, match=r"bias-suite-test/does-not-exist: .*pass the local directory"):
        load_model("bias-suite-test/does-not-exist", device="cpu")


def test_auto_device_is_cuda_bfloat16_when_present_else_cpu_float32():
    device, dtype = resolve_device("auto", "auto")
    if torch.cuda.is_available():
        assert (device.type, dtype) == ("cuda", torch.bfloat16)
    else:
        assert (device.type, dtype) == ("cpu", torch.float32)


def test_unknown_dtype_is_refused():
    with pytest.raises(ValueError, match="unknown dtype 'float8'"):
        resolve_device("cpu", "float8")


def test_remote_code_is_not_trusted_unless_asked(alias, monkeypatch):
    from transformers import AutoModelForImageTextToText

    seen = {}
    original = AutoModelForImageTextToText.from_pretrained

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(AutoModelForImageTextToText, "from_pretrained", spy)
    load_model(alias, device="cpu")
    assert seen["trust_remote_code"] is False


def test_device_map_auto_is_accepted(alias):
    loaded = load_model(alias, device_map="auto", dtype="float32")
    assert loaded.info.device in {"cpu"} | {f"cuda:{i}" for i in range(torch.cuda.device_count())}


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_config_hash_does_not_depend_on_dtype_or_attention_backend(dtype):
    reference = load_model("tiny-llava", device="cpu", dtype="float32", attn_implementation="sdpa")
    other = load_model(str(ensure_checkpoint("tiny-llava")), device="cpu", dtype=dtype, attn_implementation="eager")
    assert other.info.dtype == dtype
    assert other.info.config_hash == reference.info.config_hash


def test_config_hash_does_not_depend_on_where_the_checkpoint_lies(tmp_path):
    copy = shutil.copytree(ensure_checkpoint("tiny-llava"), tmp_path / "elsewhere")
    moved = load_model(str(copy), device="cpu").info.config_hash
    assert moved == load_model("tiny-llava", device="cpu").info.config_hash


def test_config_hash_differs_between_architectures(tmp_path):
    llava = load_model("tiny-llava", device="cpu").info.config_hash
    assert load_model("tiny-qwen2-vl", device="cpu").info.config_hash != llava
    deeper = Path(shutil.copytree(ensure_checkpoint("tiny-llava"), tmp_path / "deeper"))
    config = json.loads((deeper / "config.json").read_text())
    config["text_config"]["rms_norm_eps"] = 1e-3
    (deeper / "config.json").write_text(json.dumps(config))
    assert load_model(str(deeper), device="cpu").info.config_hash != llava


@pytest.mark.parametrize("value, expected", [("auto", "auto"), ("cpu", "cpu"), ("cuda", "cuda"),
                                             ("cuda:0", "cuda:0"), ("cuda:3", "cuda:3"), ("cuda:007", "cuda:7")])
def test_device_strings_that_parse(value, expected):
    assert parse_device(value) == expected


@pytest.mark.parametrize("value", ["cuda:x", "cuda:", "cuda:-1", "cuda:1.5", "gpu", "", "CPU", "cpu:0", " cuda"])
def test_device_strings_that_do_not_parse_are_named(value):
    with pytest.raises(ValueError, match=rf"device {value!r} .*auto, cpu, cuda or cuda:N"):
        parse_device(value)


def test_resolve_device_refuses_a_malformed_cuda_index():
    with pytest.raises(ValueError, match=r"device 'cuda:x' "):
        resolve_device("cuda:x", "auto")


# --- the hub never makes a load hang -------------------------------------------------------------------------


@pytest.fixture
def silent_hub():
    """A loopback endpoint that accepts connections and never answers; yields its URL."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    server.close()


@pytest.fixture
def refusing_hub():
    """A loopback URL with nothing listening: connections are refused at once."""
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def point_hub_at(monkeypatch, endpoint: str) -> None:
    """Make huggingface_hub (already imported, so its env vars are read) talk to ``endpoint``."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(huggingface_hub.constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                        endpoint + "/{repo_id}/resolve/{revision}/{filename}")


def load_with_deadline(spec: str, seconds: float) -> tuple[BaseException | None, float]:
    """Run ``load_model(spec)`` in a thread; ``(what it raised, seconds it took)``. Fails if it outlives ``seconds``."""
    outcome: dict[str, BaseException | None] = {"error": None}

    def run() -> None:
        try:
            load_model(spec, device="cpu")
        except BaseException as error:
            outcome["error"] = error

    start = time.monotonic()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds + 5)
    elapsed = time.monotonic() - start
    if thread.is_alive():
        pytest.fail(f"load_model({spec!r}) was still waiting for the hub after {elapsed:.0f} s")
    return outcome["error"], elapsed


def test_hub_that_never_answers_fails_within_the_deadline_with_the_offline_hint(monkeypatch, silent_hub):
    point_hub_at(monkeypatch, silent_hub)
    error, elapsed = load_with_deadline("bias-suite-test/silent-hub", HUB_DEADLINE_SECONDS)
    assert isinstance(error, ModelNotFoundError), error
    assert "bias-suite-test/silent-hub" in str(error) and OFFLINE_HINT in str(error)
    assert elapsed <= HUB_DEADLINE_SECONDS


def test_unreachable_hub_fails_fast_with_the_offline_hint(monkeypatch, refusing_hub):
    point_hub_at(monkeypatch, refusing_hub)
    error, elapsed = load_with_deadline("bias-suite-test/refused", HUB_DEADLINE_SECONDS)
    assert isinstance(error, ModelNotFoundError), error
    assert OFFLINE_HINT in str(error)
    assert elapsed <= 5.0


@pytest.fixture
def hub_without_the_repo():
    """A loopback endpoint that answers every request with the hub's 404 for an unknown repository."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class NotFound(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b'{"error": "Repository not found"}'
            self.send_response(404)
            self.send_header("X-Error-Code", "RepoNotFound")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_HEAD = do_GET

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_hub_that_has_no_such_repository_says_so(monkeypatch, hub_without_the_repo):
    point_hub_at(monkeypatch, hub_without_the_repo)
    with pytest.raises(ModelNotFoundError, match=r"bias-suite-test/absent: the hub at http://127\.0\.0\.1:\d+ has no "
                                                 r"such repository.*check the id"):
        load_model("bias-suite-test/absent", device="cpu")


def test_hub_timeouts_are_restored_after_a_load(monkeypatch, refusing_hub):
    point_hub_at(monkeypatch, refusing_hub)
    before = (huggingface_hub.constants.HF_HUB_ETAG_TIMEOUT, huggingface_hub.constants.HF_HUB_DOWNLOAD_TIMEOUT)
    with pytest.raises(ModelNotFoundError):
        load_model("bias-suite-test/refused", device="cpu")
    after = (huggingface_hub.constants.HF_HUB_ETAG_TIMEOUT, huggingface_hub.constants.HF_HUB_DOWNLOAD_TIMEOUT)
    assert after == before


# --- the tiny-checkpoint cache repairs itself ----------------------------------------------------------------


def test_truncated_cached_tiny_checkpoint_is_rebuilt(tmp_path):
    directory = ensure_checkpoint("tiny-llava", tmp_path)
    # load_file memory-maps the file: copy the tensors before truncating it, or reading them later is a SIGBUS.
    original = {name: tensor.clone() for name, tensor in load_file(directory / "model.safetensors").items()}
    os.truncate(directory / "model.safetensors", 1000)
    assert ensure_checkpoint("tiny-llava", tmp_path) == directory
    rebuilt = load_file(directory / "model.safetensors")
    assert rebuilt.keys() == original.keys()
    assert all(torch.equal(rebuilt[name], original[name]) for name in original)


def test_cached_tiny_checkpoint_without_weights_is_rebuilt(tmp_path):
    directory = ensure_checkpoint("tiny-llava", tmp_path)
    (directory / "model.safetensors").unlink()
    assert ensure_checkpoint("tiny-llava", tmp_path) == directory
    assert load_model(str(directory), device="cpu").info.missing_weights == ()


def test_half_written_tiny_checkpoint_without_completion_marker_is_rebuilt(tmp_path):
    directory = ensure_checkpoint("tiny-llava", tmp_path)
    for path in directory.iterdir():
        if path.name != "config.json":
            path.unlink()
    ensure_checkpoint("tiny-llava", tmp_path)
    assert (directory / "model.safetensors").is_file() and (directory / "tokenizer.json").is_file()


def test_intact_tiny_checkpoint_is_reused_not_rebuilt(tmp_path, monkeypatch):
    directory = ensure_checkpoint("tiny-llava", tmp_path)

    def no_build(*args, **kwargs):
        raise AssertionError("an intact checkpoint was rebuilt")

    monkeypatch.setattr(bias_suite.models.tiny, "build_family", no_build)
    assert ensure_checkpoint("tiny-llava", tmp_path) == directory


def test_corrupt_tiny_checkpoint_that_cannot_be_rebuilt_names_the_directory(tmp_path, monkeypatch):
    directory = ensure_checkpoint("tiny-llava", tmp_path)
    os.truncate(directory / "model.safetensors", 1000)

    def failing_build(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(bias_suite.models.tiny, "build_family", failing_build)
    with pytest.raises(CorruptCheckpointError) as raised:
        ensure_checkpoint("tiny-llava", tmp_path)
    message = str(raised.value)
    assert str(directory) in message
    assert "model.safetensors" in message and "No space left on device" in message
    assert "delete" in message
