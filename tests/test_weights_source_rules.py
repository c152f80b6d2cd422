"""Where the backbone's weights come from, rule by rule, on inputs written here: the hub cache folder
for each setting of HF_HUB_CACHE / HF_HOME / XDG_CACHE_HOME, HF_HUB_OFFLINE's values, a backbone
name with and without its tag (and each error whole), the untagged name's warning, the record of
each kind of source, the one line `velora info` prints for it, the advice when no hub file can be
had, and the random CLIP-sized backbone's warning. No network: every test runs with
huggingface_hub's download replaced by a failure.

tests/test_weights_source.py checks hub files read end to end; this file pins what that leaves open
(each test here was written for a mutant of velora.model.weights_source that survived it, see
benchmarks/results/mutation.md).
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from conftest import write_hub_cache
from velora.model import weights_source as weights_source_module
from velora.model.weights_source import (
    BackboneError,
    HubWeights,
    describe_source,
    fetch_hub_file,
    hub_cache_dir,
    hub_offline,
    hub_weights,
    random_backbone_warning,
    resolve_source,
    split_backbone,
)

QUICKGELU = "vit_base_patch16_clip_quickgelu_224"
OPENAI = "timm/vit_base_patch16_clip_224.openai"
HUB_ENV = ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME", "HF_HUB_OFFLINE")
# sha256 of b"abc" and of b"hello world" (FIPS 180-2's example, and the well-known one)
ABC = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
HELLO = "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
SHIPPED = Path(__file__).resolve().parents[1] / "src" / "velora" / "pretrained" / "fractal_vit_tiny64.safetensors"


@pytest.fixture(autouse=True)
def no_network_and_no_hub_settings(monkeypatch):
    """Each test starts with none of the hub's settings, and any download fails the test."""
    import huggingface_hub

    def download(*args, **kwargs):
        pytest.fail(f"a test asked the hub for a file: {args} {kwargs}")  # BaseException: not swallowed

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    for name in HUB_ENV:
        monkeypatch.delenv(name, raising=False)


def offline_hub(monkeypatch) -> list[tuple[str, bool]]:
    """hf_hub_download as it answers with an empty cache and HF_HUB_OFFLINE set; returns its requests."""
    import huggingface_hub
    from huggingface_hub.utils import LocalEntryNotFoundError

    requests = []

    def download(repo_id, filename, *, cache_dir=None, local_files_only=False):
        requests.append((filename, local_files_only))
        if not local_files_only:
            pytest.fail(f"{filename} asked of the hub while HF_HUB_OFFLINE is set")
        raise LocalEntryNotFoundError("cannot find the requested files in the disk cache")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    return requests


def hub_error(hub: HubWeights) -> str:
    with pytest.raises(BackboneError) as caught:
        fetch_hub_file(hub)
    return str(caught.value)


# --- the hub cache folder and offline mode -----------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "folder"),
    [
        ({}, None),  # huggingface_hub's default, ~/.cache/huggingface/hub
        ({"HF_HUB_CACHE": "/data/hf-cache", "HF_HOME": "/data/hf-home"}, "/data/hf-cache"),
        ({"HF_HOME": "/data/hf-home/"}, "/data/hf-home/hub"),
        ({"HUGGINGFACE_HUB_CACHE": "/data/old-name", "HF_HOME": "/data/hf-home"}, "/data/old-name"),
        ({"HF_HOME": "/data/hf-home", "XDG_CACHE_HOME": "/data/xdg"}, "/data/hf-home/hub"),
        ({"XDG_CACHE_HOME": "/data/xdg"}, "/data/xdg/huggingface/hub"),
        ({"HF_HUB_CACHE": "/data/hf-cache", "HUGGINGFACE_HUB_CACHE": "/data/old-name"}, "/data/hf-cache"),
    ],
)
def test_the_hub_cache_is_hf_hub_cache_else_hf_home_hub_else_xdg_cache_home(monkeypatch, env, folder):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert hub_cache_dir() == folder
    # the folder huggingface_hub itself reads, with the same environment when it is imported
    child_env = {"PATH": os.environ.get("PATH", ""), "HOME": "/home/someone", **env}
    read = subprocess.run(
        [sys.executable, "-c", "import huggingface_hub.constants as c; print(c.HF_HUB_CACHE)"],
        env=child_env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert read == (folder or "/home/someone/.cache/huggingface/hub")


def test_an_empty_hf_hub_cache_or_hf_home_counts_as_unset(monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", "")
    monkeypatch.setenv("HF_HOME", "/data/hf-home")
    assert hub_cache_dir() == "/data/hf-home/hub"
    monkeypatch.setenv("HF_HOME", "")
    assert hub_cache_dir() is None


@pytest.mark.parametrize("home", ["HF_HOME", "XDG_CACHE_HOME"])
def test_a_file_in_the_cache_under_hf_home_or_xdg_cache_home_is_found_offline(tmp_path, monkeypatch, home):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv(home, str(tmp_path / "home"))
    cache = tmp_path / "home" / ("hub" if home == "HF_HOME" else "huggingface/hub")
    path = write_hub_cache(cache, OPENAI, {"model.safetensors": b"abc"})["model.safetensors"]
    assert resolve_source("hub", f"{QUICKGELU}.openai") == {
        "kind": "hub",
        "hub_id": OPENAI,
        "tag": "openai",
        "file": "model.safetensors",
        "path": str(path),
        "sha256": ABC,
    }


@pytest.mark.parametrize("value", [None, "", "  ", "0", "false", "False", "FALSE", "no", " No ", "NO"])
def test_hf_hub_offline_unset_empty_0_false_or_no_in_any_case_means_online(monkeypatch, value):
    if value is not None:
        monkeypatch.setenv("HF_HUB_OFFLINE", value)
    assert hub_offline() is False


@pytest.mark.parametrize("value", ["1", "true", "True", "YES", "on", " 1 "])
def test_hf_hub_offline_1_true_yes_or_on_means_offline(monkeypatch, value):
    monkeypatch.setenv("HF_HUB_OFFLINE", value)
    assert hub_offline() is True


# --- the backbone's name and its tag -----------------------------------------------------------------


def test_a_backbone_name_splits_into_its_architecture_and_its_tag_if_any():
    assert split_backbone(f"{QUICKGELU}.openai") == (QUICKGELU, "openai")
    assert split_backbone(QUICKGELU) == (QUICKGELU, None)
    assert split_backbone(f"{QUICKGELU}.") == (QUICKGELU, None)  # an empty tag is none


def test_an_unknown_architecture_lists_the_first_eight_names_sharing_its_first_word():
    # timm has nine convnextv2 models: convnextv2_tiny, the ninth, is left out
    with pytest.raises(BackboneError) as caught:
        split_backbone("convnextv2_enormous.fcmae")
    assert str(caught.value) == (
        "model.backbone 'convnextv2_enormous.fcmae' is not a timm architecture; similar names: convnextv2_atto, "
        "convnextv2_base, convnextv2_femto, convnextv2_huge, convnextv2_large, convnextv2_nano, convnextv2_pico, "
        "convnextv2_small"
    )


def test_an_unknown_tag_lists_the_architectures_tags_or_none():
    with pytest.raises(BackboneError) as caught:
        split_backbone(f"{QUICKGELU}.openai2")
    assert str(caught.value) == (
        f"model.backbone '{QUICKGELU}.openai2': timm has no pretrained tag 'openai2' for {QUICKGELU}; its tags are "
        "metaclip_2pt5b, metaclip_400m, openai"
    )
    with pytest.raises(BackboneError) as caught:
        split_backbone("convnextv2_small.in1k")  # an architecture timm has no weights of
    assert str(caught.value) == (
        "model.backbone 'convnextv2_small.in1k': timm has no pretrained tag 'in1k' for convnextv2_small; its tags "
        "are none"
    )


@pytest.mark.parametrize(
    "name",
    [
        "gcvit_tiny.in1k",  # timm's weights of this tag come from a GitHub release, not the hub
        "convnextv2_small",  # no weights at all: timm's default tag is 'untrained'
    ],
)
def test_weights_that_are_not_on_the_hub_say_to_give_a_local_file(name):
    with pytest.raises(BackboneError) as caught:
        hub_weights(name)
    assert str(caught.value) == f"model.backbone '{name}' has no weights on the hub; give model.weights a local file"


def untagged_warnings() -> tuple[HubWeights, list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        hub = hub_weights(QUICKGELU)
    return hub, caught


def test_an_untagged_name_means_timms_default_tag_with_a_warning_naming_it_and_the_openai_tag():
    hub, caught = untagged_warnings()
    assert hub == HubWeights(QUICKGELU, "metaclip_2pt5b", "timm/vit_base_patch16_clip_224.metaclip_2pt5b")
    assert [str(w.message) for w in caught] == [
        f"model.backbone '{QUICKGELU}' names no pretrained tag, so model.weights: hub means timm's default, "
        "'metaclip_2pt5b' (timm/vit_base_patch16_clip_224.metaclip_2pt5b). Name the tag to be explicit, e.g. "
        f"{QUICKGELU}.openai for OpenAI's CLIP weights, the paper's."
    ]
    assert caught[0].category is UserWarning


def test_the_untagged_names_warning_points_at_the_callers_line():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        hub_weights(QUICKGELU)  # the caller: this test
    assert len(caught) == 1 and caught[0].filename != weights_source_module.__file__
    # under mutation testing mutmut's trampoline adds the very frame stacklevel 2 skips
    assert caught[0].filename == __file__ or "MUTANT_UNDER_TEST" in os.environ


# --- what is recorded of each source, and the line that describes it ---------------------------------


def test_no_weights_are_recorded_and_described_as_a_seeded_random_initialisation():
    source = resolve_source("none", f"{QUICKGELU}.openai")
    assert source == {"kind": "none", "backbone": f"{QUICKGELU}.openai", "init": "random, seed 0"}
    assert describe_source(source) == "random initialisation (seed 0), no pre-training"


def test_a_local_file_is_recorded_with_its_sha256_and_a_missing_one_as_missing(tmp_path):
    path = tmp_path / "vit.safetensors"
    path.write_bytes(b"abc")
    source = resolve_source(str(path), QUICKGELU)
    assert source == {"kind": "local", "path": str(path), "sha256": ABC}
    assert describe_source(source) == f"local {path} (sha256 {ABC})"

    missing = resolve_source(str(tmp_path / "absent.safetensors"), QUICKGELU)
    assert missing == {"kind": "local", "path": str(tmp_path / "absent.safetensors"), "missing": True}
    assert describe_source(missing) == f"local {tmp_path / 'absent.safetensors'} (missing: give an existing file)"


def test_a_changed_file_is_hashed_again_even_with_the_same_modification_time(tmp_path):
    path = tmp_path / "vit.safetensors"
    path.write_bytes(b"abc")
    os.utime(path, ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))
    assert resolve_source(str(path), QUICKGELU)["sha256"] == ABC
    path.write_bytes(b"hello world")  # another size, the same time
    os.utime(path, ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))
    assert resolve_source(str(path), QUICKGELU)["sha256"] == HELLO


def test_a_folder_records_the_sha256_of_each_weights_file_in_it_and_the_line_their_first_12_digits(tmp_path):
    folder = tmp_path / "weights"
    folder.mkdir()
    for name, data in {
        "b.safetensors": b"abc",
        "a.bin": b"hello world",
        "c.pt": b"abc",
        "d.pth": b"hello world",
        "notes.txt": b"abc",
        "b.safetensors.json": b"{}",
    }.items():
        (folder / name).write_bytes(data)
    source = resolve_source(str(folder), QUICKGELU)
    assert source == {
        "kind": "local",
        "path": str(folder),
        "files": {"a.bin": HELLO, "b.safetensors": ABC, "c.pt": ABC, "d.pth": HELLO},
    }
    assert describe_source(source) == (
        f"local {folder} (sha256 a.bin b94d27b9934d, b.safetensors ba7816bf8f01, c.pt ba7816bf8f01, d.pth b94d27b9934d)"
    )


def test_the_shipped_weights_are_recorded_as_shipped_and_described_with_their_manifests_categories():
    source = resolve_source("shipped:fractal_vit_tiny64", QUICKGELU)
    digest = "b8c123e863ef3d7d4151a0fce3550e29fff6fbfa3c0dbe96f7a50d76b8886083"  # the manifest's
    assert source == {"kind": "shipped", "path": str(SHIPPED), "sha256": digest}
    assert describe_source(source) == (
        f"shipped fractal-pretrained on 32 IFS categories (velora/pretrained/fractal_vit_tiny64.safetensors, "
        f"sha256 {digest})"
    )


@pytest.mark.parametrize(
    ("manifest", "what"),
    [
        (None, "pretrained"),
        ("{}", "pretrained"),
        ('{"file": "tiny.safetensors"}', "pretrained"),
        ('{"settings": {"num_categories": 7, "steps": 10}}', "fractal-pretrained on 7 IFS categories"),
        ('{"settings": {"steps": 10}}', "fractal-pretrained on ? IFS categories"),
    ],
)
def test_shipped_weights_are_described_from_the_manifest_beside_them(tmp_path, manifest, what):
    path = tmp_path / "tiny.safetensors"
    path.write_bytes(b"abc")
    if manifest is not None:
        Path(f"{path}.json").write_text(manifest)
    source = {"kind": "shipped", "path": str(path), "sha256": "0123abc"}
    assert describe_source(source) == f"shipped {what} (velora/pretrained/tiny.safetensors, sha256 0123abc)"


def test_a_hub_source_is_described_by_its_repository_tag_file_and_sha256():
    source = {
        "kind": "hub",
        "hub_id": OPENAI,
        "tag": "openai",
        "file": "pytorch_model.bin",
        "path": "/c/snapshots/1/pytorch_model.bin",
        "sha256": ABC,
    }
    assert describe_source(source) == (
        f"hub {OPENAI} (tag openai, file pytorch_model.bin, sha256 {ABC}), /c/snapshots/1/pytorch_model.bin"
    )


def test_a_hub_file_not_cached_is_described_as_fetched_on_first_use_or_offline_as_stopping_a_run(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    source = resolve_source("hub", f"{QUICKGELU}.openai")
    assert source == {"kind": "hub", "hub_id": OPENAI, "tag": "openai"}
    files = "model.safetensors, pytorch_model.bin, open_clip_model.safetensors, open_clip_pytorch_model.bin"
    assert describe_source(source) == (
        f"hub {OPENAI} (tag openai), none of {files} in the local cache and HF_HUB_OFFLINE is set: a run stops, "
        "saying how to get one"
    )
    monkeypatch.setenv("HF_HUB_OFFLINE", "no")
    assert describe_source(source) == (
        f"hub {OPENAI} (tag openai), not in the local cache: the first the repository has of {files} is fetched "
        "on first use"
    )


# --- the advice when no hub file can be had ----------------------------------------------------------

TRIED_CACHE = (
    "model.safetensors (not in the cache), pytorch_model.bin (not in the cache), open_clip_model.safetensors (not "
    "in the cache), open_clip_pytorch_model.bin (not in the cache)"
)
ARCHIVE = (
    "https://openaipublic.azureedge.net/clip/models/5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f"
    "/ViT-B-16.pt"
)


def advice(repo: str, reason: str, cache: str) -> str:
    return (
        f"model.weights: hub found no weights of {repo} ({reason}); tried {TRIED_CACHE}. Fetch one of them on a "
        f"machine with network (`hf download {repo} model.safetensors`, or "
        f"https://huggingface.co/{repo}/resolve/main/model.safetensors; the next name where the repository lacks "
        "it), then either put it anywhere and set model.weights=/path/to/model.safetensors (or the file you "
        f"fetched), or copy the Hugging Face cache ({cache}) to this machine."
    )


def test_offline_without_a_cached_file_the_advice_names_the_cache_folder_and_openais_archive(monkeypatch):
    requests = offline_hub(monkeypatch)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", "/data/hf-cache")
    assert hub_error(hub_weights(f"{QUICKGELU}.openai")) == advice(
        OPENAI, "HF_HUB_OFFLINE is set", "/data/hf-cache"
    ) + (
        f" Or, from OpenAI's own archive ({ARCHIVE}): velora convert-weights ViT-B-16.pt vit_b16_openai.safetensors "
        "--allow-torchscript, then model.weights=vit_b16_openai.safetensors."
    )
    assert requests == [
        ("model.safetensors", True),
        ("pytorch_model.bin", True),
        ("open_clip_model.safetensors", True),
        ("open_clip_pytorch_model.bin", True),
    ]


@pytest.mark.parametrize(
    ("env", "cache"),
    [({}, "~/.cache/huggingface/hub"), ({"XDG_CACHE_HOME": "/data/xdg"}, "/data/xdg/huggingface/hub")],
)
def test_without_hf_settings_the_advice_names_the_default_cache_folder(monkeypatch, env, cache):
    offline_hub(monkeypatch)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    message = hub_error(hub_weights(f"{QUICKGELU}.openai"))
    assert f"or copy the Hugging Face cache ({cache}) to this machine. Or, from OpenAI's own archive" in message


@pytest.mark.parametrize(
    "backbone",
    [
        "vit_base_patch16_clip_224.laion2b",  # OpenAI's archive holds other weights than this tag's
        "vit_large_patch14_clip_224.openai",  # OpenAI's weights, but no archive of them is known to velora
    ],
)
def test_the_conversion_of_openais_archive_is_offered_only_for_an_openai_tag_with_a_known_archive(
    monkeypatch, backbone
):
    offline_hub(monkeypatch)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", "/data/hf-home")
    repo = f"timm/{backbone}"
    assert hub_error(hub_weights(backbone)) == advice(repo, "HF_HUB_OFFLINE is set", "/data/hf-home/hub")


def test_online_a_hub_that_cannot_be_reached_is_named_with_its_error_and_the_rest_looked_up_in_the_cache(
    monkeypatch,
):
    import huggingface_hub
    from huggingface_hub.utils import EntryNotFoundError, LocalEntryNotFoundError

    requests = []

    def download(repo_id, filename, *, cache_dir=None, local_files_only=False):
        requests.append((filename, local_files_only))
        if filename == "model.safetensors":
            raise EntryNotFoundError("404: not in the repository")
        if not local_files_only:
            raise ConnectionError("no route to host")
        raise LocalEntryNotFoundError("not in the disk cache")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    monkeypatch.setenv("HF_HUB_CACHE", "/data/hf-cache")
    hub = HubWeights("vit_base_patch16_clip_224", "laion2b", "timm/vit_base_patch16_clip_224.laion2b")
    tried = TRIED_CACHE.replace("model.safetensors (not in the cache)", "model.safetensors (not in the repository)", 1)
    assert hub_error(hub) == advice(
        hub.repo_id, "the hub did not give pytorch_model.bin: ConnectionError: no route to host", "/data/hf-cache"
    ).replace(TRIED_CACHE, tried)
    assert requests == [
        ("model.safetensors", False),
        ("pytorch_model.bin", False),
        ("open_clip_model.safetensors", True),
        ("open_clip_pytorch_model.bin", True),
    ]


def test_a_repository_with_none_of_the_files_says_to_give_a_local_file(monkeypatch):
    import huggingface_hub
    from huggingface_hub.utils import EntryNotFoundError

    def download(repo_id, filename, *, cache_dir=None, local_files_only=False):
        raise EntryNotFoundError(f"404: {filename}")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    hub = HubWeights("vit_base_patch16_clip_224", "openai", OPENAI)
    assert hub_error(hub) == (
        f"model.weights: hub found no weights in {OPENAI}; tried model.safetensors (not in the repository), "
        "pytorch_model.bin (not in the repository), open_clip_model.safetensors (not in the repository), "
        "open_clip_pytorch_model.bin (not in the repository). Give model.weights a local file."
    )


# --- the warning of a random CLIP-sized backbone -----------------------------------------------------


@pytest.mark.parametrize("width", [768, 1024])
def test_a_random_backbone_768_or_more_wide_gets_one_line_saying_what_to_set(width):
    assert random_backbone_warning({"kind": "none", "backbone": QUICKGELU}, width) == (
        f"warning: model.weights is none: the {width}-wide backbone is randomly initialised, not pre-trained, so "
        "accuracy will be far below the paper's; set model.weights=hub (the backbone tag's weights from the "
        "Hugging Face hub) or model.weights=/path/to/weights.safetensors"
    )


@pytest.mark.parametrize(
    ("source", "width"),
    [
        ({"kind": "none"}, 767),  # narrower than CLIP's ViT-B
        ({"kind": "none"}, 32),
        ({"kind": "hub", "hub_id": OPENAI}, 768),  # pre-trained
        ({"kind": "local", "path": "/w.safetensors"}, 1024),
        ({"kind": "shipped", "path": "/w.safetensors"}, 32),
    ],
)
def test_a_pretrained_or_narrower_backbone_gets_no_warning(source, width):
    assert random_backbone_warning(source, width) is None
