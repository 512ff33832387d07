"""OpenAI (and OpenAI-compatible) LLM and TTS for avatarkit.

The providers live in :mod:`avatarkit_openai.llm` and :mod:`avatarkit_openai.tts`; importing this
package does not import the ``openai`` SDK.
"""

__version__ = "0.2.0"
