"""Summary languages: codes for the common ones, any other language name kept as typed."""

from __future__ import annotations

import re

# code -> the name the LLM is asked to write in
_NAMES: dict[str, str] = {
    "en": "English",
    "zh": "Chinese (Simplified)",
    "zh-tw": "Chinese (Traditional)",
    "de": "German",
    "fr": "French",
    "es": "Spanish",
    "ja": "Japanese",
    "ko": "Korean",
    "ru": "Russian",
    "pt": "Portuguese",
    "it": "Italian",
    "nl": "Dutch",
    "pl": "Polish",
    "tr": "Turkish",
    "uk": "Ukrainian",
    "ar": "Arabic",
    "fa": "Persian",
    "he": "Hebrew",
    "hi": "Hindi",
    "vi": "Vietnamese",
    "id": "Indonesian",
    "th": "Thai",
    "sv": "Swedish",
    "cs": "Czech",
}

# other spellings (lower case) -> code; the codes and English names above are added below
_ALIASES: dict[str, str] = {
    "eng": "en",
    "chinese": "zh",
    "simplified chinese": "zh",
    "mandarin": "zh",
    "zh-cn": "zh",
    "zh-hans": "zh",
    "zh-sg": "zh",
    "cn": "zh",
    "中文": "zh",
    "简体中文": "zh",
    "汉语": "zh",
    "zh-hant": "zh-tw",
    "zh-hk": "zh-tw",
    "traditional chinese": "zh-tw",
    "繁體中文": "zh-tw",
    "繁体中文": "zh-tw",
    "英语": "en",
    "英文": "en",
    "德语": "de",
    "法语": "fr",
    "西班牙语": "es",
    "日语": "ja",
    "韩语": "ko",
    "俄语": "ru",
    "deutsch": "de",
    "français": "fr",
    "francais": "fr",
    "español": "es",
    "espanol": "es",
    "日本語": "ja",
    "한국어": "ko",
    "русский": "ru",
    "português": "pt",
    "portugues": "pt",
    "italiano": "it",
    "nederlands": "nl",
    "polski": "pl",
    "türkçe": "tr",
    "українська": "uk",
    "tiếng việt": "vi",
    "farsi": "fa",
    "svenska": "sv",
    "čeština": "cs",
}
_ALIASES.update({code: code for code in _NAMES})
_ALIASES.update({name.lower(): code for code, name in _NAMES.items()})

_REGION_CODE = re.compile(r"^([a-z]{2})[-_][a-z0-9]{2,4}$")  # en-US, pt_BR, zh-CN
_NAME = re.compile(r"^[^\W\d_]+(?:[ -][^\W\d_]+)*$")  # letters of any script, single spaces or hyphens
_MAX_NAME = 40


def normalize_language(text: str) -> str:
    """A stable key for a requested language: a code for the known ones, else a Title-Cased name."""
    cleaned = " ".join(text.split())
    key = cleaned.lower().replace("_", "-")
    if key in _ALIASES:
        return _ALIASES[key]
    region = _REGION_CODE.match(key)
    if region and region.group(1) in _NAMES:
        return region.group(1)
    # An unknown two-letter code is not a name: the LLM would get "Sw" instead of a language.
    unknown_code = cleaned.isascii() and len(cleaned) <= 2
    if _NAME.match(cleaned) and len(cleaned) <= _MAX_NAME and not unknown_code:
        return cleaned.title()
    examples = "a code such as en, zh, de or ja, or a language name such as English, Chinese or Swahili"
    if not cleaned:
        raise ValueError(f"No language given; use {examples}.")
    if unknown_code and cleaned.isalpha():
        raise ValueError(f"{cleaned!r} is not a language code I know; write the language's name instead, e.g. Swahili.")
    raise ValueError(
        f"{cleaned[:60]!r} is not a language; use {examples} "
        f"(letters, spaces and hyphens only, at most {_MAX_NAME} characters)."
    )


def language_name(code: str) -> str:
    """The name to show and to ask the LLM for: "zh" -> "Chinese (Simplified)"; names stay as they are."""
    return _NAMES.get(code, code)
