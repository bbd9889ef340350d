"""Speech: decode a media file's audio track and transcribe it with Whisper.

>>> from captionkit.speech import load_audio, load_transcriber
>>> samples, seconds = load_audio("clip.mp4")  # None when the file has no audio track
>>> load_transcriber("whisper-base").transcribe(samples).text

Importing this package needs numpy and PyAV only; torch and transformers load with the first model.
"""

from captionkit.speech.audio import SAMPLE_RATE, load_audio
from captionkit.speech.whisper import Transcriber, Transcript, clear_cache, load_transcriber, resolve_spec

__all__ = ["SAMPLE_RATE", "Transcriber", "Transcript", "clear_cache", "load_audio", "load_transcriber", "resolve_spec"]
