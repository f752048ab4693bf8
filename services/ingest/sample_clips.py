"""Synthetic clips for tests and benchmarks, written with PyAV (nothing is downloaded).

The picture is a scrolling noise texture, so the encoder has real motion to work on,
with a white marker in the top-left corner of the *coded* frame, so a test can tell
where rotation put it. Audio is a sine tone. Options cover what probing must handle:
rotation metadata, variable frame rate, no audio, odd sizes, either orientation.
"""

from __future__ import annotations

import datetime as dt
import io
import itertools
import json
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import c2pa
import numpy as np
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

MARKER_FRACTION = 4  # the marker covers 1/4 of the width and height
AI_GENERATED = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"


@dataclass(frozen=True)
class ClipSpec:
    width: int
    height: int
    seconds: float
    fps: int = 30
    audio: bool = True
    audio_rate: int = 48_000
    audio_layout: str = "stereo"
    rotation: int = 0  # display-matrix rotation, degrees counter-clockwise
    # Frame durations cycle through 1/fps, 1.5/fps and 0.5/fps: same average, irregular steps.
    variable_frame_rate: bool = False
    quality_crf: int = 18
    # x264 refuses odd sizes in 4:2:0; odd-sized clips need 4:4:4 (phones crop instead).
    pixel_format: str = "yuv420p"


def write_clip(path: Path, spec: ClipSpec) -> Path:
    """Encode `spec` to `path` (the suffix picks the container) and return the path."""
    texture = _texture(spec.width, spec.height)
    with av.open(str(path), mode="w") as container:
        video = container.add_stream("libx264", rate=spec.fps,
                                     options={"preset": "ultrafast", "crf": str(spec.quality_crf)})
        video.width, video.height, video.pix_fmt = spec.width, spec.height, spec.pixel_format
        timestamps = _frame_timestamps(spec)
        # Kept in a local: the muxer replaces the stream's time base once the header is written.
        time_base = Fraction(1, spec.fps * 2)
        video.codec_context.time_base = time_base
        if spec.rotation:
            video.set_display_rotation(spec.rotation)
        audio = container.add_stream("aac", rate=spec.audio_rate, layout=spec.audio_layout) if spec.audio else None
        for index, pts in enumerate(timestamps):
            frame = av.VideoFrame.from_ndarray(_picture(texture, spec, index), format="rgb24")
            frame.pts, frame.time_base = pts, time_base
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        if audio is not None:
            _write_tone(container, audio, spec)
    return path


def header_first(source: Path, target: Path) -> Path:
    """`source` remuxed with its header (moov) first, as streaming exports write it."""
    with av.open(str(source)) as original, av.open(str(target), "w", format="mp4",
                                                  options={"movflags": "faststart"}) as remuxed:
        stream = remuxed.add_stream_from_template(original.streams.video[0])
        for packet in original.demux(original.streams.video[0]):
            if packet.size:
                packet.stream = stream
                remuxed.mux(packet)
    return target


def expected_frame_count(spec: ClipSpec) -> int:
    return len(_frame_timestamps(spec))


def _frame_timestamps(spec: ClipSpec) -> list[int]:
    """Presentation times in units of 1/(2*fps) seconds, so half-frame steps are exact."""
    steps = itertools.cycle([2, 3, 1] if spec.variable_frame_rate else [2])
    end = round(spec.seconds * spec.fps * 2)
    timestamps, pts = [], 0
    while pts < end:
        timestamps.append(pts)
        pts += next(steps)
    return timestamps


def _texture(width: int, height: int) -> np.ndarray:
    noise = np.random.default_rng(7).integers(0, 256, size=(height * 2, width * 2, 3), dtype=np.uint16)
    # A 2x2 box blur: still detailed, but not the incompressible white noise no real clip has.
    blurred = (noise + np.roll(noise, 1, 0) + np.roll(noise, 1, 1) + np.roll(noise, (1, 1), (0, 1))) // 4
    return (blurred // 2).astype(np.uint8)  # darker than the marker, so the marker stands out


def _picture(texture: np.ndarray, spec: ClipSpec, index: int) -> np.ndarray:
    top, left = (3 * index) % spec.height, (2 * index) % spec.width
    picture = np.ascontiguousarray(texture[top:top + spec.height, left:left + spec.width])
    picture[: spec.height // MARKER_FRACTION, : spec.width // MARKER_FRACTION] = 255
    return picture


def _write_tone(container: av.container.OutputContainer, audio: av.AudioStream, spec: ClipSpec) -> None:
    channels = 1 if spec.audio_layout == "mono" else 2
    total = int(spec.seconds * spec.audio_rate)
    tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(total) / spec.audio_rate)).astype(np.float32)
    for start in range(0, total, 1024):
        samples = np.ascontiguousarray(np.tile(tone[start:start + 1024], (channels, 1)))
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout=spec.audio_layout)
        frame.sample_rate, frame.pts = spec.audio_rate, start
        container.mux(audio.encode(frame))
    container.mux(audio.encode(None))


def sign_c2pa(source: Path, target: Path, digital_source_type: str = AI_GENERATED) -> Path:
    """Embed a C2PA manifest declaring `digital_source_type`, signed by a throwaway test CA.

    The c2pa wheel ships no sample files or certificates, so tests make their own: an
    ES256 root and a leaf with the key usages C2PA requires. Valid, but not trusted.
    """
    root_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    root = _certificate("Limelight Test Root", root_key, root_key, None, is_ca=True)
    leaf = _certificate("Limelight Test Signer", leaf_key, root_key, root, is_ca=False)
    chain = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (leaf, root))
    private_key = leaf_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption())
    manifest = {
        "claim_generator_info": [{"name": "limelight-tests", "version": "1.0"}],
        "title": source.name,
        "format": "video/mp4",
        "assertions": [{"label": "c2pa.actions", "data": {"actions": [
            {"action": "c2pa.created", "digitalSourceType": digital_source_type}]}}],
    }
    signed = io.BytesIO()
    signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(b"es256", chain, private_key, None))
    with c2pa.Builder(json.dumps(manifest)) as builder, open(source, "rb") as original:
        builder.sign(signer, "video/mp4", original, signed)
    target.write_bytes(signed.getvalue())
    return target


def _certificate(common_name: str, key: ec.EllipticCurvePrivateKey, issuer_key: ec.EllipticCurvePrivateKey,
                 issuer: x509.Certificate | None, *, is_ca: bool) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Limelight Tests")])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=not is_ca, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=is_ca, crl_sign=is_ca,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if not is_ca:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())
