"""What is a secret: a value under a secret-looking name (HF_TOKEN), or a credential recognised by its shape,
whatever the variable that holds it is called.

A credential often sits under a name with no secret word in it: `OTEL_EXPORTER_OTLP_HEADERS="Authorization=Bearer
..."`, `HTTPS_PROXY=http://user:pw@proxy`, `DATABASE_URL=postgresql://u:pw@db/x`. `secret_parts()` returns the
substrings of a value that are credentials by their form, so the redaction policy can mask them and an export can
refer to the variable by name:
- well-known key formats, from detect-secrets' maintained plugins (AWS key ids, GitHub, GitLab, Slack, Stripe,
  private keys and more), plus what detect-secrets 1.5 lacks or matches only in part: current OpenAI keys
  (`sk-proj-...`), Hugging Face (`hf_...`) and fine-grained GitHub tokens, whole JWTs;
- `Bearer ...` / `Basic ...` credentials anywhere in a value;
- userinfo in any URL (`scheme://user:password@host`, or a token as the user: `https://TOKEN@host`);
- in header-like values (`*_HEADERS`, `key=value,key2=value2`, `Key: value`), the value of a secret-named header
  (`x-api-key=...`) and any high-entropy string.
Detection runs once per value when a config or environment is read, never per scrubbed line.
"""

from __future__ import annotations

import re
from functools import cache
from urllib.parse import urlsplit

# a name is secret-looking when one of its words (split on _ - . and case changes) is one of these, or ends in
# PASSWORD/SECRET/APIKEY (PGPASSWORD): TOKENIZERS_PARALLELISM and max_num_batched_tokens are not secrets
SECRET_WORDS = {"KEY", "APIKEY", "TOKEN", "SECRET", "SECRETS", "PASSWORD", "PASSWD", "PASSPHRASE", "PWD", "AUTH",
                "AUTHORIZATION", "CREDENTIAL", "CREDENTIALS", "PRIVATE", "BEARER", "COOKIE", "SIGNATURE"}
SECRET_SUFFIXES = ("PASSWORD", "PASSWD", "SECRET", "APIKEY", "TOKEN")
WORD = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z0-9]+(?![a-z])")
NOT_SECRET = {"PWD", "OLDPWD", "SSH_AUTH_SOCK", "XAUTHORITY", "KRB5CCNAME"}  # match the words, hold paths
# an HTTP auth scheme followed by its credential (RFC 7235): the credential is the secret, the word is not
AUTH_SCHEME = re.compile(r"\b(?:Bearer|Basic|Token|ApiKey)\s+([A-Za-z0-9\-._~+/=:]{8,})", re.I)
# formats detect-secrets 1.5 predates (OpenAI project/service keys, Hugging Face and fine-grained GitHub tokens)
EXTRA_FORMATS = (re.compile(r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{16,}"),
                 # a whole JWT: detect-secrets' pattern ends lazily and leaves the signature out of its match
                 re.compile(r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-+/=]*"),
                 re.compile(r"\bhf_[A-Za-z0-9_]{16,}"),
                 re.compile(r"\bgithub_pat_[A-Za-z0-9_]{22,}"))
URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s,;'\"<>]+")
HEADER_NAME = re.compile(r"(HEADERS?|COOKIES?)$", re.I)
# `k=v` or `K: v` pairs, comma/semicolon/newline separated: OTLP headers, curl-like header lists, cookies
HEADER_PAIR = re.compile(r"(?:^|[,;\n&])\s*([A-Za-z0-9_.\-]+)\s*[=:]\s*([^,;\n&]+)")
ENTROPY_MIN_LEN = 16
ENTROPY_BITS = 3.5  # bits per char: random base64/hex of 16+ chars is 3.6-5; words and ids are 2.5-3.3


def is_secret_name(name: str) -> bool:
    if name.upper().lstrip("-") in NOT_SECRET:
        return False
    words = [w.upper() for w in WORD.findall(name)]
    return any(w in SECRET_WORDS or w.endswith(SECRET_SUFFIXES) for w in words)


@cache
def _patterns() -> tuple[re.Pattern, ...]:
    """detect-secrets' format detectors' patterns. Their keyword and IP plugins judge code, not values; URL
    userinfo and JWTs are matched whole here (its patterns capture a part, which would leave the rest visible)."""
    from detect_secrets.plugins.artifactory import ArtifactoryDetector
    from detect_secrets.plugins.aws import AWSKeyDetector
    from detect_secrets.plugins.azure_storage_key import AzureStorageKeyDetector
    from detect_secrets.plugins.discord import DiscordBotTokenDetector
    from detect_secrets.plugins.github_token import GitHubTokenDetector
    from detect_secrets.plugins.gitlab_token import GitLabTokenDetector
    from detect_secrets.plugins.npm import NpmDetector
    from detect_secrets.plugins.openai import OpenAIDetector
    from detect_secrets.plugins.private_key import PrivateKeyDetector
    from detect_secrets.plugins.pypi_token import PypiTokenDetector
    from detect_secrets.plugins.sendgrid import SendGridDetector
    from detect_secrets.plugins.slack import SlackDetector
    from detect_secrets.plugins.stripe import StripeDetector
    from detect_secrets.plugins.telegram_token import TelegramBotTokenDetector
    from detect_secrets.plugins.twilio import TwilioKeyDetector

    return tuple(p for cls in (
        ArtifactoryDetector, AWSKeyDetector, AzureStorageKeyDetector, DiscordBotTokenDetector, GitHubTokenDetector,
        GitLabTokenDetector, NpmDetector, OpenAIDetector, PrivateKeyDetector, PypiTokenDetector, SendGridDetector,
        SlackDetector, StripeDetector, TelegramBotTokenDetector, TwilioKeyDetector) for p in cls.denylist)


@cache
def _entropy_meter():
    from detect_secrets.plugins.high_entropy_strings import Base64HighEntropyString

    return Base64HighEntropyString()


def entropy(text: str) -> float:
    """Shannon entropy in bits per character (detect-secrets' own measure)."""
    return _entropy_meter().calculate_shannon_entropy(text)


def credential_like(token: str) -> bool:
    """Not a plain word: `Basic configuration` names no credential, `Bearer eyJ0...` or `Basic dXNlcjpwdw==` does."""
    return any(c.isdigit() or c in "-._~+/=:" for c in token) or (token.lower() != token and token.upper() != token)


def high_entropy(token: str) -> bool:
    """A random-looking string: long enough, letters and digits mixed, and dense in information."""
    token = token.strip().strip("'\"")
    return (len(token) >= ENTROPY_MIN_LEN and " " not in token and any(c.isdigit() for c in token)
            and any(c.isalpha() for c in token) and entropy(token) >= ENTROPY_BITS)


def url_userinfo(value: str) -> list[str]:
    """Credentials inside every URL of `value`: the password (and `user:password`), or a token given as the user."""
    found: list[str] = []
    for m in URL.finditer(value):
        try:
            parts = urlsplit(m.group(0))
            user, password = parts.username, parts.password
        except ValueError:
            continue
        if password:
            found += [password, f"{user}:{password}" if user else password]
        elif user and (high_entropy(user) or _known_format(user)):
            found.append(user)
    return found


def _known_format(text: str) -> list[str]:
    """Whole matches of every key format (and a captured key inside a longer match, e.g. AWS's quoted secret)."""
    found: list[str] = []
    for pattern in (*_patterns(), *EXTRA_FORMATS):
        for m in pattern.finditer(text):
            found.append(m.group(0))
            found += [g for g in m.groups() if g and len(g) >= 8]
    return found


def header_like(name: str, value: str) -> bool:
    """A header list by its name (`*_HEADERS`), or by its form (`k=v,...`, `K: v`) when it is not a URL."""
    if HEADER_NAME.search(name):
        return True
    return bool(re.match(r"^\s*[A-Za-z0-9_.\-]+\s*[=:]", value)) and not URL.match(value.strip())


def header_secrets(value: str) -> list[str]:
    """In a header list: the value of a secret-named header, and any high-entropy header value."""
    found: list[str] = []
    for key, raw in HEADER_PAIR.findall(value):
        val = raw.strip()
        if len(val) < 4 or "://" in val:
            continue
        if is_secret_name(key) or high_entropy(val):
            found.append(val)
        found += [tok for tok in re.split(r"\s+", val) if high_entropy(tok)]
    return found


def secret_parts(value: str, name: str = "") -> list[str]:
    """The substrings of `value` that are credentials by their shape (empty: none found). `name` is the variable
    or key that holds it: a header-like name lets high-entropy values count."""
    if not isinstance(value, str) or len(value) < 8:
        return []
    found = _known_format(value) + [c for c in AUTH_SCHEME.findall(value) if credential_like(c)]
    found += url_userinfo(value)
    if header_like(name, value):
        found += header_secrets(value)
    return sorted({f.strip() for f in found if len(f.strip()) >= 4}, key=len, reverse=True)
