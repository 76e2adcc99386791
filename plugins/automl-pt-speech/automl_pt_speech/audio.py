"""Audio files in, mono float32 waveforms at the backbone's sample rate out.

Decoding goes through ``soundfile`` (libsndfile: WAV, FLAC, OGG/Vorbis/Opus, MP3 with
libsndfile >= 1.1, AIFF...). Resampling uses ``soxr`` when installed, else scipy's polyphase
filter; torchaudio is not needed. Multi-channel audio is averaged to mono.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np

#: extension -> libsndfile major format that must be available to read it
_SUFFIX_FORMATS = {".wav": "WAV", ".wave": "WAV", ".flac": "FLAC", ".ogg": "OGG", ".oga": "OGG",
                   ".opus": "OGG", ".mp3": "MP3", ".aiff": "AIFF", ".aif": "AIFF", ".au": "AU"}
#: a clip whose peak amplitude stays below this (about -80 dBFS) is treated as silent
SILENCE_PEAK = 1e-4


@lru_cache(maxsize=1)
def audio_suffixes() -> frozenset[str]:
    """File extensions this installation can decode."""
    import soundfile as sf

    formats = set(sf.available_formats())
    return frozenset(s for s, fmt in _SUFFIX_FORMATS.items() if fmt in formats)


def resample(audio: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Resample a mono float32 signal (soxr high quality, else scipy polyphase)."""
    if rate_in == rate_out or len(audio) == 0:
        return audio.astype(np.float32, copy=False)
    try:
        import soxr
    except ImportError:  # pragma: no cover - exercised where soxr is not installed
        from scipy.signal import resample_poly

        g = math.gcd(int(rate_in), int(rate_out))
        return resample_poly(audio, rate_out // g, rate_in // g).astype(np.float32)
    return soxr.resample(audio, rate_in, rate_out, quality="HQ").astype(np.float32, copy=False)


def read_audio(path: str | Path, sample_rate: int, max_samples: int | None = None) -> np.ndarray:
    """Decode ``path`` to a mono float32 waveform at ``sample_rate``; when ``max_samples`` is given,
    only the first ``max_samples`` output samples are decoded (plus a small margin).

    In memory, ``path`` may also be a waveform: a float numpy array (``(samples,)`` or
    ``(samples, channels)``, already at ``sample_rate``) or a ``(array, rate)`` pair."""
    import soundfile as sf

    if isinstance(path, (np.ndarray, tuple)):
        data, rate = path if isinstance(path, tuple) else (path, sample_rate)
        data = np.asarray(data, dtype=np.float32)
        mono = data.mean(axis=1) if data.ndim == 2 else data.reshape(-1)
        out = resample(np.ascontiguousarray(mono), int(rate), sample_rate)
        return out[:max_samples] if max_samples is not None else out
    with sf.SoundFile(str(path)) as f:
        rate = f.samplerate
        frames = -1
        if max_samples is not None:
            frames = int(math.ceil(max_samples * rate / sample_rate)) + 64
        data = f.read(frames=frames, dtype="float32", always_2d=True)
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    out = resample(np.ascontiguousarray(mono), rate, sample_rate)
    return out[:max_samples] if max_samples is not None else out


def audio_duration(path: str | Path) -> float:
    """Duration in seconds from the file header (no decoding)."""
    import soundfile as sf

    info = sf.info(str(path))
    return info.frames / info.samplerate if info.samplerate else 0.0


def check_audio_file(path: str | Path) -> str | None:
    """Why ``path`` cannot be used as an audio example, or ``None`` when it can: missing file,
    unsupported extension, undecodable content, zero length, or silence."""
    import soundfile as sf

    p = Path(str(path))
    if not p.is_file():
        return "file not found"
    suffix = p.suffix.lower()
    if suffix not in audio_suffixes():
        return (f"unsupported extension {suffix or '(none)'!r}; expected one of "
                f"{', '.join(sorted(audio_suffixes()))}")
    try:
        data, rate = sf.read(str(p), dtype="float32", always_2d=True)
    except Exception as exc:  # libsndfile's message says what is wrong with the file
        return f"cannot decode as audio ({type(exc).__name__}: {str(exc).strip()})"
    if rate <= 0 or data.shape[0] == 0:
        return "zero-length clip (no samples)"
    if not np.isfinite(data).all():
        return "contains NaN or infinite samples"
    peak = float(np.abs(data).max())
    if peak < SILENCE_PEAK:
        return f"silent clip (peak amplitude {peak:.1e})"
    return None
