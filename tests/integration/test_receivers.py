"""The DICOM Storage SCP with a real pynetdicom SCU on loopback, and the watched folder."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    RLELossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from edge_agent.imaging import load_image
from edge_agent.receivers import DicomStorageSCP, WatchFolder
from edge_agent.receivers.dicom_scp import STATUS_CANNOT_PROCESS
from shared.errors import ConfigurationError, InputImageError

TIMEOUT_S = 20.0


def _wait(condition: Callable[[], bool], timeout: float = TIMEOUT_S) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def _pixels() -> np.ndarray:
    y, x = np.mgrid[0:128, 0:96]
    return ((np.sin(x / 9.0) + np.cos(y / 13.0) + 2) * 900).astype(np.uint16)


def _synthetic_dx() -> Dataset:
    """A 12-bit DX 'for presentation' with a window (no real patient)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.ViewPosition, ds.PatientName, ds.PatientID = "DX", "AP", "Test^Synthetic", "T1"
    pixels = _pixels()
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.WindowCenter, ds.WindowWidth = "1800", "3600"
    ds.PixelData = pixels.tobytes()
    return ds


class Received:
    """A callback that records paths, and fails while ``fail`` is set."""

    def __init__(self) -> None:
        self.paths: list[Path] = []
        self.loaded: list[np.ndarray] = []
        self.syntaxes: list[str | None] = []
        self.patients: list[str] = []
        self.modes: list[int] = []
        self.fail: Exception | None = None
        self.lock = threading.Lock()

    def __call__(self, path: Path) -> None:
        if self.fail is not None:
            raise self.fail
        image = load_image(path)  # what the pipeline would do
        with self.lock:
            self.paths.append(path)
            self.loaded.append(image.pixels)
            self.syntaxes.append(image.transfer_syntax)
            if image.format == "dicom":
                self.patients.append(str(dcmread(path).PatientName))
            self.modes.append(path.stat().st_mode & 0o777)


@pytest.fixture
def scp(tmp_path: Path) -> Iterator[tuple[DicomStorageSCP, Received]]:
    received = Received()
    with DicomStorageSCP(tmp_path / "inbox", received, ae_title="GH-TEST", port=0,
                         host="127.0.0.1") as server:
        yield server, received


def _associate(port: int, *contexts: tuple[str, str]) -> object:
    ae = AE(ae_title="XRAY-UNIT")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = TIMEOUT_S
    for sop_class, syntax in contexts:
        ae.add_requested_context(sop_class, syntax)
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title="GH-TEST")
    assert assoc.is_established
    return assoc


def test_scp_port_zero_picks_a_free_loopback_port(scp: tuple[DicomStorageSCP, Received]) -> None:
    server, _ = scp
    assert server.running and server.port > 0
    with socket.create_connection(("127.0.0.1", server.port), timeout=5):
        pass


def test_c_echo(scp: tuple[DicomStorageSCP, Received]) -> None:
    assoc = _associate(scp[0].port)
    try:
        assert assoc.send_c_echo().Status == 0x0000  # type: ignore[attr-defined]
    finally:
        assoc.release()  # type: ignore[attr-defined]


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless])
def test_synthetic_dicom_is_stored_atomically_and_loads(scp: tuple[DicomStorageSCP, Received],
                                                        syntax: str) -> None:
    server, received = scp
    ds = _synthetic_dx()
    expected = load_image(_saved(ds, server.inbox.parent / "original.dcm")).pixels
    if syntax == RLELossless:
        ds.compress(RLELossless)
    assoc = _associate(server.port, (DigitalXRayImageStorageForPresentation, syntax))
    try:
        status = assoc.send_c_store(ds)  # type: ignore[attr-defined]
    finally:
        assoc.release()  # type: ignore[attr-defined]
    assert status.Status == 0x0000
    assert len(received.paths) == 1
    path = received.paths[0]
    assert path.parent == server.inbox and path.name == f"{ds.SOPInstanceUID}.dcm"
    assert np.array_equal(received.loaded[0], expected)
    assert received.patients == ["Test^Synthetic"] and received.modes == [0o600]
    # no temporary file left, and the object itself deleted once handled (issue 20)
    assert [p.name for p in server.inbox.iterdir()] == ["refused"]


def _saved(ds: Dataset, path: Path) -> Path:
    ds.save_as(path, enforce_file_format=True)
    return path


def test_real_jpeg_baseline_dicom_over_the_network(scp: tuple[DicomStorageSCP, Received],
                                                   data_folder: Path) -> None:
    server, received = scp
    original = data_folder / "dicom" / "siim-cxr-monochrome2.dcm"
    ds = dcmread(original)
    assoc = _associate(server.port, (ds.SOPClassUID, JPEGBaseline8Bit))
    try:
        status = assoc.send_c_store(ds)  # type: ignore[attr-defined]
    finally:
        assoc.release()  # type: ignore[attr-defined]
    assert ds.SOPClassUID == SecondaryCaptureImageStorage and ds.Modality == "CR"
    assert status.Status == 0x0000
    assert np.array_equal(received.loaded[0], load_image(original).pixels)
    assert received.syntaxes == [JPEGBaseline8Bit]


def test_failing_callback_is_a_failure_status_and_the_scp_keeps_serving(
        scp: tuple[DicomStorageSCP, Received]) -> None:
    server, received = scp
    received.fail = InputImageError("not a chest X-ray")
    assoc = _associate(server.port, (DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian))
    try:
        failed = assoc.send_c_store(_synthetic_dx())  # type: ignore[attr-defined]
        assert failed.Status == STATUS_CANNOT_PROCESS
        assert assoc.send_c_echo().Status == 0x0000  # type: ignore[attr-defined]
        received.fail = RuntimeError("a bug in the callback")
        assert assoc.send_c_store(_synthetic_dx()).Status == STATUS_CANNOT_PROCESS  # type: ignore[attr-defined]
        received.fail = None
        assert assoc.send_c_store(_synthetic_dx()).Status == 0x0000  # type: ignore[attr-defined]
    finally:
        assoc.release()  # type: ignore[attr-defined]
    again = _associate(server.port, (DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian))
    try:
        assert again.send_c_store(_synthetic_dx()).Status == 0x0000  # type: ignore[attr-defined]
    finally:
        again.release()  # type: ignore[attr-defined]
    assert len(received.paths) == 2
    assert failed.ErrorComment == "not a chest X-ray"  # the unit shows why (issue 20)
    assert list(server.inbox.glob("*.dcm")) == []  # handled ones are deleted at once
    assert len(list((server.inbox / "refused").glob("*.dcm"))) == 2  # refused ones kept with their reason


def test_unsupported_sop_class_is_not_accepted(scp: tuple[DicomStorageSCP, Received]) -> None:
    ae = AE(ae_title="XRAY-UNIT")
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", scp[0].port, ae_title="GH-TEST")
    assert not assoc.is_established  # no acceptable presentation context
    assert scp[1].paths == []


def test_bad_ae_title_and_taken_port(tmp_path: Path, scp: tuple[DicomStorageSCP, Received]) -> None:
    with pytest.raises(ConfigurationError, match="AE title"):
        DicomStorageSCP(tmp_path, Received(), ae_title="A" * 17)
    taken = DicomStorageSCP(tmp_path / "other", Received(), port=scp[0].port, host="127.0.0.1")
    with pytest.raises(ConfigurationError, match="cannot listen"):
        taken.start()


# --- the watched folder --------------------------------------------------------------------------------


def _png(path: Path) -> Path:
    y, x = np.mgrid[0:128, 0:128]
    Image.fromarray(((np.sin(x / 9.0) + np.cos(y / 13.0) + 2) * 60).astype(np.uint8)).save(path, format="PNG")
    return path


@pytest.fixture(params=["watchdog", "polling"])
def watched(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[WatchFolder, Received]]:
    received = Received()
    folder = WatchFolder(tmp_path / "drop", received, stable_s=0.5, poll_s=0.1,
                         use_watchdog=request.param == "watchdog")
    with folder:
        assert folder.watching == request.param
        yield folder, received


def test_dropped_file_is_processed_once_and_moved_to_done(watched: tuple[WatchFolder, Received],
                                                          tmp_path: Path) -> None:
    folder, received = watched
    _png(tmp_path / "x.png").replace(folder.folder / "x.png")
    assert _wait(lambda: (folder.done_folder / "x.png").exists())
    time.sleep(0.5)
    assert [p.name for p in received.paths] == ["x.png"] and folder.processed == 1
    assert not (folder.folder / "x.png").exists()


def test_slowly_written_file_is_read_only_when_complete(watched: tuple[WatchFolder, Received],
                                                        tmp_path: Path) -> None:
    folder, received = watched
    data = _saved(_synthetic_dx(), tmp_path / "slow.dcm").read_bytes()
    target = folder.folder / "slow.dcm"
    with open(target, "wb") as handle:
        for start in range(0, len(data), len(data) // 8):
            handle.write(data[start:start + len(data) // 8])
            handle.flush()
            time.sleep(0.15)  # shorter than stable_s: the file keeps changing
    assert _wait(lambda: folder.processed + folder.failed >= 1)
    assert folder.failed == 0 and len(received.paths) == 1
    assert np.array_equal(received.loaded[0], load_image(tmp_path / "slow.dcm").pixels)


def test_failed_file_goes_to_failed_with_its_error(watched: tuple[WatchFolder, Received],
                                                   tmp_path: Path) -> None:
    folder, received = watched
    (tmp_path / "junk.png").write_bytes(b"not an image")
    (tmp_path / "junk.png").replace(folder.folder / "junk.png")
    _png(tmp_path / "good.png").replace(folder.folder / "good.png")
    assert _wait(lambda: folder.processed + folder.failed == 2)
    failed = folder.failed_folder / "junk.png"
    assert failed.exists() and (folder.done_folder / "good.png").exists()
    note = (folder.failed_folder / "junk.png.error.txt").read_text()
    assert note.startswith("CorruptImageError: junk.png: not a readable PNG or JPEG")


def test_hidden_and_temporary_files_are_ignored(watched: tuple[WatchFolder, Received],
                                                tmp_path: Path) -> None:
    folder, received = watched
    for name in (".hidden.png", "copying.png.part", "x.tmp", "download.crdownload"):
        _png(folder.folder / name)
    _png(tmp_path / "real.png").replace(folder.folder / "real.png")
    assert _wait(lambda: folder.processed == 1)
    time.sleep(1.0)
    assert [p.name for p in received.paths] == ["real.png"] and folder.failed == 0
    assert (folder.folder / ".hidden.png").exists() and (folder.folder / "x.tmp").exists()


def test_files_present_at_start_and_name_clashes_in_done(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    (drop / "done").mkdir(parents=True)
    _png(drop / "done" / "a.png")
    _png(drop / "a.png")
    received = Received()
    with WatchFolder(drop, received, stable_s=0.2, poll_s=0.05, use_watchdog=False) as folder:
        assert _wait(lambda: folder.processed == 1)
    assert sorted(p.name for p in (drop / "done").iterdir()) == ["a-1.png", "a.png"]


def test_scan_waits_for_a_stable_size(tmp_path: Path) -> None:
    """The stability rule itself, with a fake clock and no thread."""
    received = Received()
    folder = WatchFolder(tmp_path, received, stable_s=2.0)
    folder.done_folder.mkdir()
    folder.failed_folder.mkdir()
    path = _png(tmp_path / "a.png")
    assert folder.scan(now=100.0) is True  # first seen
    assert folder.scan(now=101.0) is True and not received.paths  # not stable long enough
    with open(path, "ab") as handle:
        handle.write(b"\0")  # still growing: the clock starts again
    assert folder.scan(now=102.5) is True and not received.paths
    assert folder.scan(now=104.0) is True and not received.paths
    assert folder.scan(now=104.6) is False
    assert folder.failed + folder.processed == 1
