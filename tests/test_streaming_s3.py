"""Streaming data on s3://, against a local moto S3 server: optimize uploads, num_classes resolves from the bucket,
training streams every sample through litdata's cache, and a second optimize is a no-op.

litdata downloads through boto3 here: its obstore path does not speak plain http to a local endpoint, so it is
turned off for the test (boto3 and obstore read the same objects; a real bucket uses obstore)."""

from __future__ import annotations

import pytest

from convnetlab.data.folder import count_classes
from convnetlab.data.streaming import StreamingDataModule
from convnetlab.data.streaming_writer import optimize_folder
from test_streaming import N, ids, numbered_tree

moto_server = pytest.importorskip("moto.server")


@pytest.fixture()
def bucket(monkeypatch):
    import boto3
    import litdata.streaming.downloader

    server = moto_server.ThreadedMotoServer(port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    for key, value in {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "test",
                       "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(litdata.streaming.downloader, "_OBSTORE_AVAILABLE", False)
    boto3.client("s3").create_bucket(Bucket="bucket")
    yield "s3://bucket"
    server.stop()


def test_optimize_to_s3_then_train_from_the_bucket(bucket, tmp_path):
    import boto3

    root = numbered_tree(tmp_path / "folder")
    url = f"{bucket}/data"
    assert optimize_folder(root, url, chunk_size=4) == url
    keys = {o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket="bucket")["Contents"]}
    assert {"data/classes.json", "data/train/index.json", "data/val/index.json", "data/train/chunk-0-0.bin"} <= keys
    assert count_classes(url) == 2
    cache = tmp_path / "cache"
    dm = StreamingDataModule(url, image_size=8, resize_size=8, batch_size=4, num_workers=2, cache_dir=str(cache))
    assert dm.root.is_relative_to(cache)  # what is computed from the data is kept beside the cached chunks
    dm.setup()
    assert sorted(i for x, _ in dm.train_dataloader() for i in ids(x)) == list(range(N))
    assert any(cache.rglob("chunk-*.bin"))  # streamed through litdata's local cache
    assert optimize_folder(tmp_path / "elsewhere", url) == url  # classes.json exists: nothing is written
