"Download, verify, resume and safe extraction against a local HTTP server on 127.0.0.1 (no internet needed)."
import functools, hashlib, http.server, io, socket, stat, threading, time, zipfile
from pathlib import Path
import numpy as np, pytest
from avbt_tacma.core import AVBTError
from avbt_tacma.download import fetch, safe_extract, download_videos, download_features, verify, FEATURES, AVE_ZIP
from avbt_tacma.cli import main


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    "Serves files of a folder; honours `Range: bytes=N-` (unless `ignore_range`); records every request's headers."
    seen: list = []
    ignore_range = False

    def log_message(self, *a): pass

    def send_head(self):
        self.seen.append((self.path, dict(self.headers)))
        path = Path(self.translate_path(self.path))
        if not path.is_file(): self.send_error(404); return None
        data = path.read_bytes()
        rng = None if self.ignore_range else self.headers.get('Range')
        start = int(rng.split('=')[1].split('-')[0]) if rng else 0
        if rng and start >= len(data): self.send_error(416); return None
        self.send_response(206 if rng else 200)
        self.send_header('Content-Type', 'application/octet-stream')
        self.send_header('Content-Length', str(len(data) - start))
        if rng: self.send_header('Content-Range', f'bytes {start}-{len(data) - 1}/{len(data)}')
        self.end_headers()
        return io.BytesIO(data[start:])


@pytest.fixture
def server(tmp_path):
    www = tmp_path / 'www'; www.mkdir()
    handler = type('H', (RangeHandler,), {'seen': [], 'ignore_range': False})
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(handler, directory=str(www)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield www, f'http://127.0.0.1:{srv.server_address[1]}', handler
    srv.shutdown(); srv.server_close()


def closed_port() -> int:
    s = socket.socket(); s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]; s.close()
    return port


def make_zip(path, members, links=()):
    with zipfile.ZipFile(path, 'w', zipfile.ZIP_DEFLATED) as z:
        for n, b in members.items(): z.writestr(n, b)
        for n, target in links:
            zi = zipfile.ZipInfo(n); zi.external_attr = (stat.S_IFLNK | 0o777) << 16; z.writestr(zi, target)
    return path


ANN = 'Category&VideoID&Quality&StartTime&EndTime\nBark&vid00001&good&2&7\nCat&vid00002&good&0&10\n'
MEMBERS = {'AVE_Dataset/Annotations.txt': ANN, 'AVE_Dataset/AVE/vid00001.mp4': bytes(range(256)) * 300,
           'AVE_Dataset/AVE/vid00002.mp4': b'\x01' * 5000, 'AVE_Dataset/trainSet.txt': 'Bark&vid00001&good&2&7\n'}


def test_download_verify_extract(server, tmp_path):
    www, base, h = server
    z = make_zip(www / 'AVE_Dataset.zip', MEMBERS)
    blob = z.read_bytes()
    got = fetch(f'{base}/AVE_Dataset.zip', tmp_path / 'dl' / 'AVE_Dataset.zip', size=len(blob),
                sha256=hashlib.sha256(blob).hexdigest(), md5=hashlib.md5(blob).hexdigest(), progress=False)
    assert got.read_bytes() == blob and not (tmp_path / 'dl' / 'AVE_Dataset.zip.part').exists()
    files = safe_extract(got, tmp_path / 'out', progress=False)
    assert sorted(str(p.relative_to(tmp_path / 'out')) for p in files) == sorted(MEMBERS)
    for n, b in MEMBERS.items():
        assert (tmp_path / 'out' / n).read_bytes() == (b.encode() if isinstance(b, str) else b)
    assert not [p for p in (tmp_path / 'out').rglob('*') if p.name.startswith('.')]   # no temporaries left
    # a second fetch finds the finished file and does not ask the server again
    n = len(h.seen)
    fetch(f'{base}/AVE_Dataset.zip', got, size=len(blob), progress=False)
    assert len(h.seen) == n


@pytest.mark.parametrize('bad', ['AVE_Dataset/../../escaped.txt', '../escaped.txt', '/tmp/avbt_escaped_abs.txt',
                                 'a\\..\\..\\escaped.txt'])
def test_zip_with_escaping_member_is_refused(tmp_path, bad):
    z = make_zip(tmp_path / 'evil.zip', {'AVE_Dataset/Annotations.txt': ANN, bad: 'gotcha'})
    out = tmp_path / 'a' / 'b' / 'out'
    with pytest.raises(AVBTError, match='refusing to extract'):
        safe_extract(z, out, progress=False)
    assert not out.exists()                                           # checked before anything was written
    assert not list(tmp_path.rglob('escaped.txt')) and not Path('/tmp/avbt_escaped_abs.txt').exists()


def test_zip_with_symlink_is_refused(tmp_path):
    z = make_zip(tmp_path / 'ln.zip', {'x/readme.txt': 'hi'}, links=[('x/link', '../../../../etc/passwd')])
    with pytest.raises(AVBTError, match='symbolic link'):
        safe_extract(z, tmp_path / 'out', progress=False)
    assert not (tmp_path / 'out').exists()


def test_not_a_zip(tmp_path):
    (tmp_path / 'x.zip').write_bytes(b'not a zip at all')
    with pytest.raises(AVBTError, match='not a readable zip'):
        safe_extract(tmp_path / 'x.zip', tmp_path / 'out', progress=False)


def test_checksum_mismatch_is_refused(server, tmp_path):
    www, base, _ = server
    (www / 'f.bin').write_bytes(b'payload' * 1000)
    dest = tmp_path / 'f.bin'
    with pytest.raises(AVBTError, match='sha256 .* does not match'):
        fetch(f'{base}/f.bin', dest, sha256=hashlib.sha256(b'something else').hexdigest(), progress=False)
    assert not dest.exists() and not (tmp_path / 'f.bin.part').exists()
    with pytest.raises(AVBTError, match='md5'):
        fetch(f'{base}/f.bin', dest, md5='0' * 32, progress=False)
    with pytest.raises(AVBTError, match='offers 7000 bytes, expected 7001'):
        fetch(f'{base}/f.bin', dest, size=7001, progress=False)
    assert not dest.exists()


def test_partial_download_is_resumed_with_range(server, tmp_path):
    www, base, h = server
    blob = np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
    (www / 'big.bin').write_bytes(blob)
    dest = tmp_path / 'big.bin'
    (tmp_path / 'big.bin.part').write_bytes(blob[:123_456])           # what a killed run left
    fetch(f'{base}/big.bin', dest, size=len(blob), sha256=hashlib.sha256(blob).hexdigest(), progress=False, chunk=4096)
    assert dest.read_bytes() == blob
    assert h.seen[-1][1].get('Range') == 'bytes=123456-'
    # a .part that is already complete: the server answers 416 and the file is verified and moved into place
    dest2 = tmp_path / 'big2.bin'
    (tmp_path / 'big2.bin.part').write_bytes(blob)
    fetch(f'{base}/big.bin', dest2, sha256=hashlib.sha256(blob).hexdigest(), progress=False)
    assert dest2.read_bytes() == blob


def test_server_ignoring_range_restarts(server, tmp_path):
    www, base, h = server
    h.ignore_range = True
    blob = b'0123456789' * 5000
    (www / 'f.bin').write_bytes(blob)
    (tmp_path / 'f.bin.part').write_bytes(b'garbage!' * 100)
    fetch(f'{base}/f.bin', tmp_path / 'f.bin', size=len(blob), progress=False)
    assert (tmp_path / 'f.bin').read_bytes() == blob                  # not appended to the old bytes


def test_unreachable_url_is_one_line_error(tmp_path):
    url = f'http://127.0.0.1:{closed_port()}/AVE_Dataset.zip'
    with pytest.raises(AVBTError) as e:
        fetch(url, tmp_path / 'AVE_Dataset.zip', progress=False)
    msg = str(e.value)
    assert '\n' not in msg and 'cannot download AVE_Dataset.zip from 127.0.0.1' in msg and 'connection refused' in msg
    assert not list(tmp_path.iterdir())


def test_cli_videos_end_to_end(server, tmp_path, capsys):
    www, base, h = server
    make_zip(www / 'AVE_Dataset.zip', MEMBERS)
    to = tmp_path / 'ave'
    assert main(['data', 'download', '--what', 'videos', '--to', str(to), '--mirror', base]) == 0
    root = to / 'AVE_Dataset'
    assert 'AVE videos ready' in capsys.readouterr().out
    assert (root / 'AVE' / 'vid00001.mp4').read_bytes() == MEMBERS['AVE_Dataset/AVE/vid00001.mp4']
    assert not (to / 'AVE_Dataset.zip').exists()                      # removed after unpacking (no --keep-zip)
    n = len(h.seen)
    assert download_videos(to, mirror=base, progress=False) == root and len(h.seen) == n   # finished: nothing fetched


def test_cli_without_network_exits_2_with_one_line(tmp_path, capsys):
    rc = main(['data', 'download', '--what', 'features', '--to', str(tmp_path / 'f'), '--mirror',
               f'http://127.0.0.1:{closed_port()}'])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and err.startswith('avbt data: error: cannot download')


class Trickle(http.server.BaseHTTPRequestHandler):
    "Promises 10 kB and sends one byte every 0.25 s (a per-read timeout never fires)."
    def log_message(self, *a): pass
    def do_GET(self):
        self.send_response(200); self.send_header('Content-Length', '10000'); self.end_headers()
        try:
            for _ in range(10000): self.wfile.write(b'x'); self.wfile.flush(); time.sleep(0.25)
        except OSError: pass


@pytest.mark.parametrize('limit', ['rate', 'deadline'])
def test_trickling_server_is_stopped_with_one_line_and_resumable(tmp_path, capsys, monkeypatch, limit):
    import avbt_tacma.download as D
    if limit == 'rate': monkeypatch.setattr(D, 'RATE_WINDOW', 1.5)        # 60 s by default: kept short here
    else: monkeypatch.setattr(D, 'MIN_RATE', 0); monkeypatch.setattr(D, 'DEADLINE', 1.5)
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Trickle)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        t0 = time.monotonic()
        rc = main(['data', 'download', '--what', 'videos', '--to', str(tmp_path / 'ave'),
                   '--mirror', f'http://127.0.0.1:{srv.server_address[1]}'])
        took = time.monotonic() - t0
    finally: srv.shutdown(); srv.server_close()
    err = capsys.readouterr().err.split('\r')[-1].strip()            # after the progress bar's last redraw
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert err.startswith('avbt data: error: download of AVE_Dataset.zip stopped'), err
    assert ('below the minimum of 1024 bytes/s' if limit == 'rate' else 'not done within 1.5 s') in err
    assert took < 10 and 'keep' not in err and 're-run to resume' in err
    part = tmp_path / 'ave' / 'AVE_Dataset.zip.part'
    assert 0 < part.stat().st_size < 100 and not (tmp_path / 'ave' / 'AVE_Dataset.zip').exists()


def test_features_from_mirror(server, tmp_path, monkeypatch):
    "The feature download checks each HDF5 file's key and shape and writes labels.h5 from the annotations."
    import h5py
    import avbt_tacma.download as dl
    from avbt_tacma.ave import CATEGORIES
    from avbt_tacma.features import load_features
    www, base, _ = server
    n = 12   # a miniature release: same names and layout, fewer rows (the expected shapes are patched to match)
    rows = [f'{CATEGORIES[i % 28]}&vid{i:05d}&good&{i % 5}&{i % 5 + 3}' for i in range(n)]
    (www / 'Annotations.txt').write_text('Category&VideoID&Quality&StartTime&EndTime\n' + '\n'.join(rows) + '\n')
    with h5py.File(www / 'audio_feature.h5', 'w') as f: f['avadataset'] = np.ones((n, 10, 128))
    with h5py.File(www / 'visual_feature.h5', 'w') as f: f['avadataset'] = np.ones((n, 10, 7, 7, 4))
    for s, o in zip(('train', 'val', 'test'), (np.arange(8), np.arange(8, 10), np.arange(10, 12))):
        with h5py.File(www / f'{s}_order.h5', 'w') as f: f['order'] = o
    shapes = {'audio_feature.h5': (n, 10, 128), 'visual_feature.h5': (n, 10, 7, 7, 4),
              'train_order.h5': (8,), 'val_order.h5': (2,), 'test_order.h5': (2,)}
    small = [dl.Remote(r.name, r.drive_id, r.url, h5=(r.h5[0], shapes[r.name]) if r.h5 else None) for r in FEATURES]
    monkeypatch.setattr(dl, 'FEATURES', small); monkeypatch.setattr(dl, 'AVE_ROWS', n)
    to = download_features(tmp_path / 'feat', mirror=base, progress=False)
    fs = load_features(to)
    assert fs.audio.shape == (n, 10, 128) and fs.labels.shape == (n, 10, 29)
    lab = fs.labels.argmax(-1)
    assert lab[7].tolist() == [28, 28] + [7] * 3 + [28] * 5          # row 7: category 7 over seconds 2..4
    assert [len(fs.splits[s]) for s in ('train', 'val', 'test')] == [8, 2, 2]
    # a feature file of the wrong shape is refused with the file named
    with h5py.File(www / 'audio_feature.h5', 'w') as f: f['avadataset'] = np.ones((n, 10, 64))
    (to / 'audio_feature.h5').unlink()
    with pytest.raises(AVBTError, match=r'audio_feature.h5: avadataset has shape \(12, 10, 64\)'):
        download_features(to, mirror=base, progress=False)


def test_remote_table():
    names = [r.name for r in FEATURES]
    assert names == ['audio_feature.h5', 'visual_feature.h5', 'train_order.h5', 'val_order.h5', 'test_order.h5',
                     'Annotations.txt']
    assert AVE_ZIP.drive_id == '1FjKwe79e0u96vdjIVwfRQ1V6SoDHe7kK'
    assert {r.name: r.h5[1] for r in FEATURES if r.h5}['visual_feature.h5'] == (4143, 10, 7, 7, 512)


META = Path(__file__).resolve().parents[2] / 'shared' / 'ave-meta'

@pytest.mark.skipif(not (META / 'train_order.h5').exists(), reason='shared AVE metadata not present')
def test_recorded_order_checksums_match_reference_copies():
    for r in FEATURES:
        if r.sha256: verify(META / r.name, r.size, r.sha256)
