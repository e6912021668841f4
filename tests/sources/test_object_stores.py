"""Object stores beyond S3: the gcs/azure extras, tokenizers and recipes read from bucket URLs, and a missing
filesystem package reported in one line that names the extra to install (never an ImportError traceback).

The bucket is the moto S3 server of ``s3_server``; Google Cloud Storage and Azure are checked through their
fsspec filesystems (installed by the extras), not through a live service.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import s3_server
from tokenmill.config import load_yaml
from tokenmill.errors import SourceError
from tokenmill.sources import expand_urls, open_url
from tokenmill.sources.urls import url_to_fs
from tokenmill.tokenizer import load_tokenizer

moto_server, s3 = s3_server.moto_server, s3_server.s3  # the shared S3 fixtures
ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-c", "import sys; from tokenmill.cli import main; sys.exit(main())"]


def test_gcs_and_azure_extras_install_their_filesystems():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(r.startswith("gcsfs==") for r in extras["gcs"])
    assert any(r.startswith("adlfs==") for r in extras["azure"])
    dev = " ".join(extras["dev"])
    assert "gcs" in dev and "azure" in dev
    gcsfs = pytest.importorskip("gcsfs")
    adlfs = pytest.importorskip("adlfs")
    import fsspec

    assert issubclass(fsspec.get_filesystem_class("gs"), gcsfs.GCSFileSystem)
    assert issubclass(fsspec.get_filesystem_class("az"), adlfs.AzureBlobFileSystem)


def test_missing_filesystem_package_is_one_line_naming_what_to_install():
    """``oci://`` needs ``ocifs``, which nothing installs: the error says so, in one line."""
    pytest.importorskip("fsspec")
    with pytest.raises(SourceError) as err:
        url_to_fs("oci://bucket@namespace/data.jsonl")
    message = str(err.value)
    assert "\n" not in message and "ocifs" in message and message.startswith("oci://bucket@namespace")
    with pytest.raises(SourceError, match="ocifs"):
        expand_urls(["oci://bucket@namespace/*.jsonl"])
    with pytest.raises(SourceError, match="ocifs"):
        open_url("oci://bucket@namespace/data.jsonl")


def test_output_to_gs_without_gcsfs_names_the_extra(tmp_path):
    """The user's path: ``prepare --output gs://...`` on a machine without gcsfs (hidden from this process)."""
    src = tmp_path / "a.jsonl"
    src.write_text('{"text": "hello"}\n')
    code = (
        "import sys; sys.modules['gcsfs'] = None\n"
        "from tokenmill.cli import main\n"
        f"sys.exit(main(['prepare', {str(src)!r}, '--tokenizer', 'bytes', '--output', 'gs://bucket/cache',"
        " '--workers', '0']))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out.stderr
    assert "gs://bucket/cache" in lines[0] and "pip install 'tokenmill[gcs]'" in lines[0]


@pytest.mark.s3
def test_tokenizer_from_a_bucket_url(s3, tokenizer_path):
    url = s3.put("tokenizers/tokenizer.json", tokenizer_path.read_bytes())
    remote = load_tokenizer(url)
    local = load_tokenizer(tokenizer_path)
    assert remote.fingerprint == local.fingerprint
    assert remote.encode("hello world") == local.encode("hello world")
    # a folder in a bucket, as a cache stores its tokenizer
    folder = tokenizer_path.parent
    for f in folder.iterdir():
        if f.is_file():
            s3.put(f"tokfolder/{f.name}", f.read_bytes())
    assert load_tokenizer(s3.url("tokfolder")).fingerprint == local.fingerprint


@pytest.mark.s3
def test_recipe_and_config_from_a_bucket_url(s3, tokenizer_path, jsonl_shards):
    from tokenmill.recipe import load_recipe

    s3.put("exp/tokenizer.json", tokenizer_path.read_bytes())
    s3.put("exp/data/part-00.jsonl", jsonl_shards[0].read_bytes())
    s3.put(
        "exp/recipe.yaml",
        b"tokenizer: tokenizer.json\nsources:\n  web: {urls: data/*.jsonl, weight: 1.0}\n",
    )
    recipe = load_recipe(s3.url("exp/recipe.yaml"))
    assert recipe.tokenizer == s3.url("exp/tokenizer.json")
    (web,) = recipe.sources
    assert web.urls == [s3.url("exp/data/*.jsonl")]
    assert expand_urls(web.urls) == [s3.url("exp/data/part-00.jsonl")]
    assert load_tokenizer(recipe.tokenizer).fingerprint == load_tokenizer(tokenizer_path).fingerprint

    s3.put("exp/prepare.yaml", b"max_documents: 5\nsources: [data/part-00.jsonl]\n")
    assert load_yaml(s3.url("exp/prepare.yaml")) == {"max_documents": 5, "sources": ["data/part-00.jsonl"]}
