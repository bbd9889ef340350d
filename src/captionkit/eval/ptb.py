"""Pure-Python twin of the tokenisation pycocoevalcap does before BLEU/METEOR/ROUGE-L/CIDEr.

pycocoevalcap runs Stanford CoreNLP 3.4.1's ``PTBTokenizer -preserveLines -lowerCase`` (Java) over all the
captions of one batch, joined by newlines, and then drops the tokens in :data:`PUNCTUATIONS`. This module
re-implements that pipeline without Java: a longest-match lexer (the JFlex semantics the Java class is
generated with: the longest match wins, ties go to the earlier rule, a rule ``a/b`` matches ``ab`` but
returns ``a``) over the token rules of PTBLexer as they behave in the 3.4.1 jar, the jar's option defaults
(PTB3 escaping: ``(`` -> ``-LRB-``, ``[`` -> ``-LSB-``, ``"`` -> `````/``''``, dashes -> ``--``, ellipses ->
``...``, split assimilations ``gonna`` -> ``gon na``, ``cannot`` -> ``can not``), lower-casing per token
(Java ``toLowerCase(Locale.ENGLISH)``, so ``-LRB-`` becomes ``-lrb-`` and, unlike ``-LRB-``, is *not* in
pycocoevalcap's punctuation list: it stays), then pycocoevalcap's punctuation filter.

Behaviour worth knowing (all of it is what pycocoevalcap itself does, reproduced on purpose):

* Characters outside the Basic Multilingual Plane (emoji, ``𝐀``, rare CJK) are deleted: Java sees two
  surrogate halves that no rule matches, and the lexer's default is to drop such characters. They still
  separate tokens (``a😀b`` -> ``a b``). Only URL, e-mail and SGML tokens, whose rules accept "any
  character but ...", keep them (``www.x.com/😀``). The lexer here works on UTF-16 code units too.
* A text's tokens can depend on its neighbours in the batch: the texts are lexed as one stream, so the last
  text of a call sees end-of-input where the others see a newline (``"a :)"`` at the very end becomes
  ``a -rrb-``, elsewhere ``a :-rrb-``; ``'99`` becomes ``99``), and a few rules look across the newline
  (``"x A."`` followed by a text starting ``"The "`` gives ``x a``, otherwise ``x a.``).
  :func:`ptb_tokenize` lexes its list the same way, so a list tokenised here equals the same list
  tokenised by pycocoevalcap in one call.

How it was checked: the rules come from the PTBLexer grammar (JFlex source of the 2013-2017 releases) adjusted
to what the 3.4.1 jar actually does, then compared with the jar (same batching, same options) on every BMP
character in six contexts, on all pairs of ~120 tricky characters in five contexts, and on ~100k random
recombinations of caption pieces, entities, numbers, URLs, quotes and unicode: no difference left. The
per-rule regular expressions are ordered so that Python's backtracking finds JFlex's longest match; that is
tested, not proven, so a pathological input could still tokenise differently.

Known differences from the jar, by construction:

* Line breaks inside a text. pycocoevalcap replaces only ``\\n`` with a space; a ``\\r``, ``\\v``, ``\\f``,
  U+2028 or U+2029 inside a caption makes Java start a new output line, so every later caption of the batch
  is paired with its predecessor's tokens (a pycocoevalcap bug that silently corrupts scores). Here every
  line-break character is replaced by a space first, so texts never shift.
* Unpaired surrogates in a Python string (pycocoevalcap cannot even encode them and raises) are deleted
  like any character the lexer does not know.
* ``ptb_tokens`` (before the filter) may differ from the jar in ``.`` tokens after abbreviations followed by
  a non-ASCII capital added to Unicode after 6.x (the sentence-end check uses this Python's ``isupper``);
  :func:`ptb_tokenize` is unaffected, the filter drops those periods.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence

__all__ = ["PUNCTUATIONS", "ptb_tokenize", "ptb_tokens"]

# pycocoevalcap/tokenizer/ptbtokenizer.py: tokens dropped after tokenisation (compared after lower-casing,
# so "-lrb-", "-lsb-" ... stay).
PUNCTUATIONS = frozenset(["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-",
                          ".", "?", "!", ",", ":", "-", "--", "...", ";"])

_NL = "\n"
# Line breaks Java's lexer would honour inside one text; mapped to spaces (see the module docstring).
_LINEBREAKS = re.compile("[\r\x0b\x0c\u2028\u2029]")


# ---------------------------------------------------------------------------------------------------------
# Character classes
# ---------------------------------------------------------------------------------------------------------

def _class_body(pred: Callable[[str], bool]) -> str:
    """A regex character-class body of the BMP code points (no surrogates) for which ``pred`` holds."""
    parts: list[str] = []
    start = None
    for cp in range(0x10001):
        ok = cp <= 0xFFFF and not (0xD800 <= cp <= 0xDFFF) and pred(chr(cp))
        if ok and start is None:
            start = cp
        elif not ok and start is not None:
            end = cp - 1
            parts.append(_esc(start) if start == end else f"{_esc(start)}-{_esc(end)}")
            start = None
    return "".join(parts)


def _esc(cp: int) -> str:
    return f"\\u{cp:04x}"


# The jar's letter and digit classes (JFlex [:letter:] / [:digit:] = Java Character.isLetter / isDigit of
# the JDK that generated it, Unicode 6.x), BMP only, as hex code-point ranges. Frozen here rather than
# computed from this Python's unicodedata so that characters added to Unicode later (and the two Mongolian
# letters that became marks) are treated as the jar treats them, whatever the Python version.
_JAR_LETTERS = """
41-5a 61-7a aa b5 ba c0-d6 d8-f6 f8-2c1 2c6-2d1 2e0-2e4 2ec 2ee 370-374 376-377 37a-37d 386 388-38a 38c
38e-3a1 3a3-3f5 3f7-481 48a-527 531-556 559 561-587 5d0-5ea 5f0-5f2 620-64a 66e-66f 671-6d3 6d5 6e5-6e6
6ee-6ef 6fa-6fc 6ff 710 712-72f 74d-7a5 7b1 7ca-7ea 7f4-7f5 7fa 800-815 81a 824 828 840-858 8a0 8a2-8ac
904-939 93d 950 958-961 971-977 979-97f 985-98c 98f-990 993-9a8 9aa-9b0 9b2 9b6-9b9 9bd 9ce 9dc-9dd
9df-9e1 9f0-9f1 a05-a0a a0f-a10 a13-a28 a2a-a30 a32-a33 a35-a36 a38-a39 a59-a5c a5e a72-a74 a85-a8d
a8f-a91 a93-aa8 aaa-ab0 ab2-ab3 ab5-ab9 abd ad0 ae0-ae1 b05-b0c b0f-b10 b13-b28 b2a-b30 b32-b33 b35-b39
b3d b5c-b5d b5f-b61 b71 b83 b85-b8a b8e-b90 b92-b95 b99-b9a b9c b9e-b9f ba3-ba4 ba8-baa bae-bb9 bd0
c05-c0c c0e-c10 c12-c28 c2a-c33 c35-c39 c3d c58-c59 c60-c61 c85-c8c c8e-c90 c92-ca8 caa-cb3 cb5-cb9 cbd
cde ce0-ce1 cf1-cf2 d05-d0c d0e-d10 d12-d3a d3d d4e d60-d61 d7a-d7f d85-d96 d9a-db1 db3-dbb dbd dc0-dc6
e01-e30 e32-e33 e40-e46 e81-e82 e84 e87-e88 e8a e8d e94-e97 e99-e9f ea1-ea3 ea5 ea7 eaa-eab ead-eb0
eb2-eb3 ebd ec0-ec4 ec6 edc-edf f00 f40-f47 f49-f6c f88-f8c 1000-102a 103f 1050-1055 105a-105d 1061
1065-1066 106e-1070 1075-1081 108e 10a0-10c5 10c7 10cd 10d0-10fa 10fc-1248 124a-124d 1250-1256 1258
125a-125d 1260-1288 128a-128d 1290-12b0 12b2-12b5 12b8-12be 12c0 12c2-12c5 12c8-12d6 12d8-1310 1312-1315
1318-135a 1380-138f 13a0-13f4 1401-166c 166f-167f 1681-169a 16a0-16ea 1700-170c 170e-1711 1720-1731
1740-1751 1760-176c 176e-1770 1780-17b3 17d7 17dc 1820-1877 1880-18a8 18aa 18b0-18f5 1900-191c 1950-196d
1970-1974 1980-19ab 19c1-19c7 1a00-1a16 1a20-1a54 1aa7 1b05-1b33 1b45-1b4b 1b83-1ba0 1bae-1baf 1bba-1be5
1c00-1c23 1c4d-1c4f 1c5a-1c7d 1ce9-1cec 1cee-1cf1 1cf5-1cf6 1d00-1dbf 1e00-1f15 1f18-1f1d 1f20-1f45
1f48-1f4d 1f50-1f57 1f59 1f5b 1f5d 1f5f-1f7d 1f80-1fb4 1fb6-1fbc 1fbe 1fc2-1fc4 1fc6-1fcc 1fd0-1fd3
1fd6-1fdb 1fe0-1fec 1ff2-1ff4 1ff6-1ffc 2071 207f 2090-209c 2102 2107 210a-2113 2115 2119-211d 2124 2126
2128 212a-212d 212f-2139 213c-213f 2145-2149 214e 2183-2184 2c00-2c2e 2c30-2c5e 2c60-2ce4 2ceb-2cee
2cf2-2cf3 2d00-2d25 2d27 2d2d 2d30-2d67 2d6f 2d80-2d96 2da0-2da6 2da8-2dae 2db0-2db6 2db8-2dbe 2dc0-2dc6
2dc8-2dce 2dd0-2dd6 2dd8-2dde 2e2f 3005-3006 3031-3035 303b-303c 3041-3096 309d-309f 30a1-30fa 30fc-30ff
3105-312d 3131-318e 31a0-31ba 31f0-31ff 3400-4db5 4e00-9fcc a000-a48c a4d0-a4fd a500-a60c a610-a61f
a62a-a62b a640-a66e a67f-a697 a6a0-a6e5 a717-a71f a722-a788 a78b-a78e a790-a793 a7a0-a7aa a7f8-a801
a803-a805 a807-a80a a80c-a822 a840-a873 a882-a8b3 a8f2-a8f7 a8fb a90a-a925 a930-a946 a960-a97c a984-a9b2
a9cf aa00-aa28 aa40-aa42 aa44-aa4b aa60-aa76 aa7a aa80-aaaf aab1 aab5-aab6 aab9-aabd aac0 aac2 aadb-aadd
aae0-aaea aaf2-aaf4 ab01-ab06 ab09-ab0e ab11-ab16 ab20-ab26 ab28-ab2e abc0-abe2 ac00-d7a3 d7b0-d7c6
d7cb-d7fb f900-fa6d fa70-fad9 fb00-fb06 fb13-fb17 fb1d fb1f-fb28 fb2a-fb36 fb38-fb3c fb3e fb40-fb41
fb43-fb44 fb46-fbb1 fbd3-fd3d fd50-fd8f fd92-fdc7 fdf0-fdfb fe70-fe74 fe76-fefc ff21-ff3a ff41-ff5a
ff66-ffbe ffc2-ffc7 ffca-ffcf ffd2-ffd7 ffda-ffdc
"""
_JAR_DIGITS = """
30-39 660-669 6f0-6f9 7c0-7c9 966-96f 9e6-9ef a66-a6f ae6-aef b66-b6f be6-bef c66-c6f ce6-cef d66-d6f
e50-e59 ed0-ed9 f20-f29 1040-1049 1090-1099 17e0-17e9 1810-1819 1946-194f 19d0-19d9 1a80-1a89 1a90-1a99
1b50-1b59 1bb0-1bb9 1c40-1c49 1c50-1c59 a620-a629 a8d0-a8d9 a900-a909 a9d0-a9d9 aa50-aa59 abf0-abf9
ff10-ff19
"""


def _ranges_class(spec: str) -> str:
    parts = []
    for item in spec.split():
        lo, _, hi = item.partition("-")
        parts.append(_esc(int(lo, 16)) + (f"-{_esc(int(hi, 16))}" if hi else ""))
    return "".join(parts)


_L = _ranges_class(_JAR_LETTERS)
_D = _ranges_class(_JAR_DIGITS)
_LD = _L + _D


def _ci(word: str) -> str:
    """A literal matched case-insensitively, as JFlex %caseless does outside character classes."""
    out = []
    for ch in word:
        if ch.isalpha() and ch.lower() != ch.upper():
            out.append(f"[{re.escape(ch.lower())}{re.escape(ch.upper())}]")
        else:
            out.append(re.escape(ch))
    return "".join(out)


def _ci_alts(words: str) -> str:
    return "(?:" + "|".join(_ci(w) for w in words.split("|")) + ")"


# ---------------------------------------------------------------------------------------------------------
# Macros (PTBLexer.flex, as the 3.4.1 jar behaves)
# ---------------------------------------------------------------------------------------------------------

_SGML_NAME = r"[A-Za-z][A-Za-z0-9_:.\-]*"
SGML = (r"<(?:[!?][A-Za-z\-][^>\r\n]*|" + _SGML_NAME + r"(?:[ ]+(?:" + _SGML_NAME
        + r"""[ ]*=[ ]*(?:'[^']*'|"[^"]*")|""" + _SGML_NAME + r"))*[ ]*\/?|\/" + _SGML_NAME + r")[ ]*>")
SPMDASH = "&" + _ci_alts("MD|mdash|ndash") + ";|[\u0096\u0097\u2013\u2014\u2015]"
SPAMP = _ci("&amp;")
SPPUNC = "&(?:" + _ci_alts("HT|TL|UR|LR|QC|QL|QR|odq|cdq") + "|#[0-9]+);"
SPLET = "&[aeiouAEIOU]" + _ci_alts("acute|grave|uml") + ";"
SPACE = "[ \t\u00a0\u2000-\u200a\u3000]"
SPACES = SPACE + "+"
NEWLINE = "(?:\r?\n|[\r\u2028\u2029\x0b\x0c\x85])"
SPACENL = f"(?:{SPACE}|{NEWLINE})"
_UPPER = _class_body(str.isupper)  # Java Character.isUpperCase: Lu and Other_Uppercase
SENTEND = f"{SPACENL}(?:{SPACENL}|[{_UPPER}]|{SGML})"
D = f"[{_D}]"
L = f"[{_L}]"
LD = f"[{_LD}]"
DATE = f"{D}{{1,2}}[\\-\\/]{D}{{1,2}}[\\-\\/]{D}{{2,4}}"
NUM = f"(?:{D}*(?:[.:,\u00ad\u066b\u066c]{D}+)+|{D}+)"
NUMBER = f"[\\-+]?{NUM}"
SUBSUPNUM = "[\u207a\u207b\u208a\u208b]?(?:[\u2070\u00b9\u00b2\u00b3\u2074-\u2079]+|[\u2080-\u2089]+)"
FRAC = f"(?:{D}{{1,4}}[- \u00a0])?{D}{{1,4}}(?:\\\\?\\/|\u2044){D}{{1,4}}"
FRAC2 = "[\u00bc\u00bd\u00be\u2153-\u215e]"
DOLSIGN = r"(?:[A-Z]*\$|#)"
DOLSIGN2 = "[\u00a2\u00a3\u00a4\u00a5\u0080\u20a0\u20ac\u060b\u0e3f\u20a4\uffe0\uffe1\uffe5\uffe6]"
_WORD_EXTRA = (
    "\u00ad\u0237-\u024f\u02c2-\u02c5\u02d2-\u02df\u02e5-\u02ff\u0300-\u036f\u0370-\u037d\u0384\u0385\u03cf"
    "\u03f6\u03fc-\u03ff\u0483-\u0487\u04cf\u04f6-\u04ff\u0510-\u0525\u055a-\u055f\u0591-\u05bd\u05bf\u05c1"
    "\u05c2\u05c4\u05c5\u05c7\u0615-\u061a\u063b-\u063f\u064b-\u065e\u0670\u06d6-\u06ef\u06fa-\u06ff\u070f"
    "\u0711\u0730-\u074f\u0750-\u077f\u07a6-\u07b1\u07ca-\u07f5\u07fa\u0900-\u0903\u093c\u093e-\u094e"
    "\u0951-\u0955\u0962-\u0963\u0981-\u0983\u09bc-\u09c4\u09c7\u09c8\u09cb-\u09cd\u09d7\u09e2\u09e3"
    "\u0a01-\u0a03\u0a3c\u0a3e-\u0a4f\u0a81-\u0a83\u0abc-\u0acf\u0b82\u0bbe-\u0bc2\u0bc6-\u0bc8\u0bca-\u0bcd"
    "\u0c01-\u0c03\u0c3e-\u0c56\u0d3e-\u0d44\u0d46-\u0d48\u0e30-\u0e3a\u0e47-\u0e4e\u0eb1-\u0ebc\u0ec8-\u0ecd"
)
LETTER = f"(?:[{_L}{_WORD_EXTRA}]|{SPLET})"
_LETTER_OR_DIGIT = f"(?:[{_LD}{_WORD_EXTRA}]|{SPLET})"
WORD = f"{LETTER}{_LETTER_OR_DIGIT}*(?:[.!?]{LETTER}{_LETTER_OR_DIGIT}*)*"
APOS = "(?:['\u0092\u2019]|" + _ci("&apos;") + ")"
APOSETC = f"(?:{APOS}|[`\u0091\u2018\u201b])"
HYPHEN = "[-_\u058a\u2010\u2011]"
THING = (f"(?:[dDoOlL]{APOSETC}{LD})?{LD}+"
         f"(?:{HYPHEN}(?:[dDoOlL]{APOSETC}{LD})?{LD}+)*")
THINGA = f"[A-Z]+(?:(?:{SPAMP}|[+&])[A-Z]+)+"
THING3 = r"[A-Za-z0-9]+(?:-[A-Za-z]+){0,2}(?:\\?\/[A-Za-z0-9]+(?:-[A-Za-z]+){0,2}){1,2}"
ACRO_ALTS = [r"[A-Za-z](?:\.[A-Za-z])+",
             _ci_alts("Canada|Sino|Korean|EU|Japan|non") + "-" + _ci("U.S"),
             _ci("U.S.-") + "(?:" + _ci("U.K") + "|" + _ci("U.S.S.R") + ")"]
ACRO = "(?:" + "|".join(ACRO_ALTS) + ")"
HTHING = f"[A-Za-z0-9][A-Za-z0-9.,\u00ad]*(?:-(?:{ACRO}\\.|[A-Za-z0-9\u00ad]+))+"
REDAUX = f"{APOS}(?:{_ci_alts('re|ve|ll')}|[msdMSD])"
SWORD = "[A-Za-z\u00ad]*[A-MO-Za-mo-z]\u00ad*"
SREDAUX = f"[nN]{APOSETC}[tT]"
APOWORD_ALTS = [
    f"{APOS}[nN]{APOS}?",
    f"[lLdDjJ]{APOS}",
    _ci("Dunkin") + APOS, _ci("somethin") + APOS, _ci("ol") + APOS, APOS + _ci("em"),
    f"[A-HJ-XZn]{APOSETC}{L}{{2}}{L}*",
    f"{APOS}[2-9]0[sS]",
    f"{APOS}{_ci('til')}[lL]?",
    f"{L}{L}*[aeiouyAEIOUY]{APOSETC}[aeiouA-Z]{L}*",
    APOS + _ci("cause"),
    _ci("cont'd") + r"\.?",
    _ci("'twas"), _ci("nor'easter"), _ci("c'mon"), _ci("e'er"), _ci("s'mores"), _ci("ev'ry"), _ci("li'l"),
    _ci("nat'l"), f"[oO]{APOSETC}[oO]",
]
APOWORD2 = f"[yY]{APOS}"
_URLCHARS = r"[^ \t\n\f\r\"<>|(){}]"
FULLURL = _ci("http") + "[sS]?:\\/\\/" + _URLCHARS + "+[^ \\t\\n\\f\\r\\\"<>|.!?(){},-]"
_URLTAIL = r"(?:\/[^ \t\n\f\r\"<>|()]+[^ \t\n\f\r\"<>|.!?(){},-])?"
LIKELYURL_ALTS = [
    _ci("www") + r"\.(?:[^ \t\n\f\r\"<>|.!?(){},]+\.)+[a-zA-Z]{2,4}" + _URLTAIL,
    r"(?:[^ \t\n\f\r\"`'<>|.!?(){},-_$]+\.)+" + _ci_alts("com|net|org|edu") + _URLTAIL,
]
EMAIL = ("(?:<|" + _ci("&lt;") + r")?[a-zA-Z0-9][^ \t\n\f\r\"<>|()\u00a0{}]*@"
         r"(?:[^ \t\n\f\r\"<>|(){}.\u00a0]+\.)*[^ \t\n\f\r\"<>|(){}.\u00a0]+(?:>|" + _ci("&gt;") + ")?")
TWITTER = f"@[a-zA-Z_][a-zA-Z_0-9]*|#{LETTER}+"
SMILEY = r"[<>]?[:;=][\-o\*']?[\(\)DPdpO\\{@\|\[\]]"
ASIANSMILEY_ALTS = [r"[\-\^x=~<>']_[\-\^x=~<>']", r"\([\-\^x=~<>'][_.]?[\-\^x=~<>']\)",
                    r"\([\^x=~<>']-[\^x=~<>'`]\)"]
PROG_LANGS = r"[cC]\+\+|[cCfF]#"
FILENAME_EXT = _ci_alts("bat|bmp|c|class|cgi|cpp|dll|doc|docx|exe|gif|gz|h|htm|html|jar|java|jpeg|jpg|mov|"
                        "mp3|pdf|php|pl|png|ppt|ps|py|sql|tar|txt|wav|x|xml|zip")
FILENAME = f"{_LETTER_OR_DIGIT}+(?:\\.{_LETTER_OR_DIGIT}+)*\\.{FILENAME_EXT}"

ABMONTH = _ci_alts("Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec")
ABDAYS = _ci_alts("Mon|Tue|Tues|Wed|Thu|Thurs|Fri")
_CASED_FIRST = "Az|Ark|Del|Ill|La|Mass|Miss|Ore|Pa|Tex|Wash"  # first letter upper-case only
ABSTATE = ("(?:" + _ci_alts("Ala|Ariz|Calif|Colo|Conn|Ct|Dak|Fla|Ga|Ind|Kan|Kans|Ky|Md|Mich|Minn|Mo|Mont|"
                            "Neb|Nev|Okla|Penn|Tenn|Va|Vt|Wis|Wisc|Wyo")
           + "|" + "|".join(w[0] + _ci(w[1:]) for w in _CASED_FIRST.split("|")) + ")")
ABTITLE = ("(?:" + _ci_alts("Mr|Mrs|Ms") + "|M" + _ci("iss") + "|"
           + _ci_alts("Dr|Drs|Prof|Profs|Sen|Sens|Rep|Reps|Atty|Attys|Lt|Col|Gen|Messrs|Gov|Govs|Adm|Rev|Maj|"
                      "Sgt|Cpl|Pvt|Capt|St|Ste|Ave|Pres|Lieut|Hon|Brig|Cmdr|Comdr|Pfc|Spc|Supt|Supts|Det|Mt|"
                      "Ft|Adj|Adv|Asst|Assoc|Ens|Insp|Mlle|Mme|Msgr|Sfc")
           + ")")
ABPTIT = "(?:" + _ci_alts("Jr|Sr|Bros|Blvd|Rd|Esq") + "|" + _ci_alts("Ed|Ph") + r"\." + _ci("D") + ")"
ABCOMP = _ci_alts("Inc|Co|Cos|Corp|Pty|Ptys|Ppty|Pptys|Pte|Ptes|Ppte|Pptes|Ltd|Plc|Rt|Bancorp|Bhd|Assn|Univ|"
                  "Intl|Sys")
ABCOMP2 = _ci_alts("Invt|Elec|Natl|Mfg|Mtg|Dept")
ABNUM = _ci_alts("tel|est|ext|sq")
# ABBREV1: normally followed by lower case; before an upper-case word (or a second space) the period is also
# returned as a sentence end.
ABBREV1_ALTS = [f"{a}\\." for a in (ABMONTH, ABDAYS, ABSTATE, ABCOMP, ABNUM, ABPTIT,
                                     _ci_alts("etc|al|seq|Bldg"))]
# ABBREV2: normally followed by an upper-case word; never a sentence end.
ABBREV4_ALTS = ["[A-Za-z]", ABTITLE, _ci_alts("vs|Alex|Wm|Jos|Cie|cf|TREAS|Ph"), _ci("a.k.a"), *ACRO_ALTS,
                ABCOMP2]
# ABBREV3: abbreviations only before a number.
ABBREV3 = _ci_alts("ca|fig|figs|prop|no|nos|art|pp|op") + r"\."
_ACRONYM_NEXT = "|".join(
    f"{w[0]}{_ci(w[1:])}" for w in (
        "About According Additionally After An A As At But Earlier He Her Here However If In It Last Many "
        "More Mr. Ms. Now Once One Other Our She Since So Some Such That The Then There These They This We "
        "When While What Yet You Their").split()) + "|" + SGML
PHONE_ALTS = [
    r"(?:\([0-9]{2,3}\)[ \u00a0]?|(?:\+\+?)?(?:[0-9]{2,4}[\- \u00a0])?[0-9]{2,4}[\- \u00a0])"
    r"[0-9]{3,4}[\- \u00a0]?[0-9]{3,5}",
    r"(?:(?:\+\+?)?[0-9]{2,4}\.)?[0-9]{2,4}\.[0-9]{3,4}\.[0-9]{3,5}",
]
LDOTS_ALTS = [r"\.{3,5}", r"(?:\.[ \u00a0]){2,4}\.", "[\u0085\u2026]"]
INSENTP = "[,;:\u3001]"
QUOTES_ALTS = [APOS, "''", "[`\u2018\u2019\u201a\u201b\u201c\u201d\u0091\u0092\u0093\u0094\u201e\u201f"
                           "\u2039\u203a\u00ab\u00bb]{1,2}"]
DBLQUOT = '(?:"|' + _ci("&quot;") + ")"
TBSPEC = ("(?:-" + _ci_alts("RRB|LRB|RCB|LCB|RSB|LSB") + "-|" + _ci("C.D.s") + "|" + _ci("pro-") + "|"
          + _ci("anti-") + "|" + _ci("S") + "(?:&|" + SPAMP + ")" + _ci("P-500") + "|" + _ci("S") + "(?:&|"
          + SPAMP + ")" + _ci("Ls") + "|" + _ci("Cap") + APOS + _ci("n") + "|" + _ci("c") + APOS + _ci("est")
          + ")")
TBSPEC2 = f"{APOS}[0-9][0-9]"
MISCSYMBOL = ("[+%&~\\^|\\\\\u00a6\u00a7\u00a8\u00a9\u00ac\u00ae\u00af\u00b0-\u00b3\u00b4-\u00ba\u00d7\u00f7"
              "\u0387\u05be\u05c0\u05c3\u05c6\u05f3\u05f4\u0600-\u0603\u0606-\u060a\u060c\u0614\u061b\u061e"
              "\u066a\u066d\u0703-\u070d\u07f6\u07f7\u07f8\u0964\u0965\u0e4f\u1fbd\u2016\u2017\u2020-\u2023"
              "\u2030-\u2038\u203b\u203e-\u2042\u2044\u207a-\u207f\u208a-\u208e\u2100-\u214f\u2190-\u21ff"
              "\u2200-\u2bff\u3012\u30fb\uff01-\uff0f\uff1a-\uff20\uff3b-\uff40\uff5b-\uff65]")
ASSIM3 = "(?:" + _ci("cannot") + "|'" + _ci("twas") + ")"
ASSIM2 = "(?:" + _ci_alts("gonna|gotta|lemme|gimme|wanna") + "|'" + _ci("tis") + ")"


# ---------------------------------------------------------------------------------------------------------
# Token actions: each gets the matched text (without trailing context) and returns (token or None, consumed)
# ---------------------------------------------------------------------------------------------------------

def _soft(t: str) -> str:
    t2 = t.replace("\u00ad", "")
    return t2 if t2 else "-"


_LATEX_TABLE = str.maketrans({"\u0091": "`", "\u2018": "`", "\u201b": "`", "\u2039": "`",
                              "\u0092": "'", "\u2019": "'", "\u203a": "'",
                              "\u0093": "``", "\u201c": "``", "\u00ab": "``",
                              "\u0094": "''", "\u201d": "''", "\u00bb": "''"})
_APOS_ENT = re.compile("&apos;|'")
_QUOT_ENT = re.compile('"|&quot;')
_AMP_ENT = re.compile("(?i:&amp;)")


def _quotes(t: str, left: bool) -> str:
    if left:
        t = _QUOT_ENT.sub("``", _APOS_ENT.sub("`", t))
    else:
        t = _QUOT_ENT.sub("''", _APOS_ENT.sub("'", t))
    return t.translate(_LATEX_TABLE)


def _amp(t: str) -> str:
    return _AMP_ENT.sub("&", t)


_FRACTIONS = str.maketrans({"\u00bc": "1/4", "\u00bd": "1/2", "\u00be": "3/4", "\u2153": "1/3",
                             "\u2154": "2/3"})
_CURRENCY = str.maketrans({"\u00a2": "cents", "\u00a3": "#", "\u0080": "$", "\u00a4": "$", "\u20a0": "$",
                           "\u20ac": "$"})


def _acronym(t: str) -> str:
    return t[0] if len(t) == 2 else t


def _parens(t: str) -> str:
    return t.replace("(", "-LRB-").replace(")", "-RRB-")


def _phone(t: str) -> str:
    return t.replace(" ", "\u00a0").replace("(", "-LRB-").replace(")", "-RRB-")


_SAME = lambda t: t  # noqa: E731
_SKIP = None
_NEWLINE_TOKEN = object()

# The rules in priority order (JFlex: the longest match wins, the earlier rule on a tie), each as
# (alternatives, trailing context or None, action, token_back, resume_back). A rule matches the longest of its
# alternatives (each written so that Python's first match is its longest) followed by the trailing context,
# whose length counts for the longest-match comparison but which is not consumed. The token is
# action(matched[:len - token_back]) (skipped when the action is None); lexing resumes at the end of the match
# minus resume_back (JFlex's yypushback).
_RULE_SPECS: list[tuple[list[str], str | None, Callable[[str], str] | object | None, int, int]] = [
    ([PROG_LANGS], None, _SAME, 0, 0),
    ([ASSIM3], None, _SAME, 3, 3),
    ([ASSIM2], None, _SAME, 2, 2),
    ([SGML], None, lambda t: t.replace(" ", "\u00a0"), 0, 0),
    ([SPMDASH], None, lambda t: "--", 0, 0),
    ([SPAMP], None, _amp, 0, 0),
    ([SPPUNC], None, _SAME, 0, 0),
    ([WORD], REDAUX, _soft, 0, 0),
    ([SWORD], SREDAUX, _soft, 0, 0),
    ([WORD], None, _soft, 0, 0),
    (APOWORD_ALTS, None, _SAME, 0, 0),
    ([APOWORD2], L, _SAME, 0, 0),
    ([FULLURL], None, _SAME, 0, 0),
    (LIKELYURL_ALTS, None, _SAME, 0, 0),
    ([EMAIL], None, _SAME, 0, 0),
    ([TWITTER], None, _SAME, 0, 0),
    ([REDAUX], "[^A-Za-z]", lambda t: _quotes(t, False), 0, 0),
    ([SREDAUX], None, lambda t: _quotes(t, False), 0, 0),
    ([DATE], None, _SAME, 0, 0),
    ([NUMBER], None, _soft, 0, 0),
    ([SUBSUPNUM], None, _SAME, 0, 0),
    ([FRAC], None, lambda t: t.replace(" ", "\u00a0"), 0, 0),
    ([FRAC2], None, lambda t: t.translate(_FRACTIONS), 0, 0),
    ([TBSPEC], None, _amp, 0, 0),
    ([THING3], None, _SAME, 0, 0),
    ([DOLSIGN], None, _SAME, 0, 0),
    ([DOLSIGN2], None, lambda t: t.translate(_CURRENCY), 0, 0),
    # ACRONYM before a sentence-initial word: the period is also a sentence end; "A." alone is a letter.
    ([f"{a}\\." for a in ["[A-Za-z](?:\\.[A-Za-z])*", *ACRO_ALTS[1:]]],
     f"{SPACENL}+(?:{_ACRONYM_NEXT}){SPACENL}", _acronym, 0, 1),
    # "Pty. Ltd.", "Co. Ltd.": not a sentence end
    (["[pP][tT][eyEY]\\.|[cC][oO]\\."], SPACE + _ci_alts("ltd|lim"), _SAME, 0, 0),
    (ABBREV1_ALTS, SENTEND, _SAME, 0, 1),
    (ABBREV1_ALTS, "(?s:..)", _SAME, 0, 0),
    (ABBREV1_ALTS, None, _SAME, 0, 1),
    ([f"{a}\\." for a in ABBREV4_ALTS], None, _SAME, 0, 0),
    ([ABBREV3], f"{SPACENL}?{D}", _SAME, 0, 0),
    (ABBREV4_ALTS, SPACE, _SAME, 0, 0),
    (ACRO_ALTS, SPACENL, _SAME, 0, 0),
    ([TBSPEC2], SPACENL, _SAME, 0, 0),
    ([FILENAME], f"{SPACENL}|[.?!,]", _SAME, 0, 0),
    ([f"{WORD}\\."], INSENTP, _soft, 0, 0),
    (PHONE_ALTS, None, _phone, 0, 0),
    ([DBLQUOT], "[A-Za-z0-9$]", lambda t: _quotes(t, True), 0, 0),
    ([DBLQUOT], None, lambda t: _quotes(t, False), 0, 0),
    (["\x7f"], None, _SKIP, 0, 0),
    (["<|" + _ci("&lt;")], None, lambda t: "<", 0, 0),
    ([">|" + _ci("&gt;")], None, lambda t: ">", 0, 0),
    ([SMILEY], "[^A-Za-z0-9]", _parens, 0, 0),
    (ASIANSMILEY_ALTS, None, _parens, 0, 0),
    ([r"\["], None, lambda t: "-LSB-", 0, 0),
    ([r"\]"], None, lambda t: "-RSB-", 0, 0),
    ([r"\{"], None, lambda t: "-LCB-", 0, 0),
    ([r"\}"], None, lambda t: "-RCB-", 0, 0),
    ([r"\("], None, lambda t: "-LRB-", 0, 0),
    ([r"\)"], None, lambda t: "-RRB-", 0, 0),
    ([r"\-+"], None, lambda t: "--" if 3 <= len(t) <= 4 else t, 0, 0),
    (LDOTS_ALTS, None, lambda t: "...", 0, 0),
    (["@+|#+|_+"], None, _SAME, 0, 0),
    ([r"\*+|(?:\\\*){1,3}"], None, _SAME, 0, 0),
    ([INSENTP], None, _SAME, 0, 0),
    (["[?!]+"], None, _SAME, 0, 0),
    (["[.\u00a1\u00bf\u037e\u0589\u061f\u06d4\u0700-\u0702\u07fa\u3002]"], None, _SAME, 0, 0),
    (["="], None, _SAME, 0, 0),
    ([r"\/"], None, _SAME, 0, 0),
    ([f"{HTHING}\\."], INSENTP, _soft, 0, 0),
    ([HTHING], None, _soft, 0, 0),
    ([f"{THING}\\."], INSENTP, _SAME, 0, 0),
    ([THING], None, _SAME, 0, 0),
    ([f"{THINGA}\\."], INSENTP, _amp, 0, 0),
    ([THINGA], None, _amp, 0, 0),
    (["'"], "[A-Za-z][^ \t\n\r\u00a0]", lambda t: _quotes(t, True), 0, 0),
    ([REDAUX], None, lambda t: _quotes(t, False), 0, 0),
    (QUOTES_ALTS, None, lambda t: _quotes(t, False), 0, 0),
    (["<<|>>"], None, _SAME, 0, 0),
    ([MISCSYMBOL], None, _SAME, 0, 0),
    ([f"\x00|{SPACES}|[\u200b\u200e\u200f\ufeff]"], None, _SKIP, 0, 0),
    ([NEWLINE], None, _NEWLINE_TOKEN, 0, 0),
    ([_ci("&nbsp;")], None, _SKIP, 0, 0),
    (["[^\n]"], None, _SKIP, 0, 0),  # untokenizable: deleted (the jar's default, "firstDelete")
]


class _Rule:
    __slots__ = ("action", "alts", "has_trail", "resume_back", "token_back")

    def __init__(self, alts: list[str], trail: str | None, action, token_back: int, resume_back: int):
        if trail is None:
            self.alts = [re.compile(a) for a in alts]
        else:
            self.alts = [re.compile(f"(?:{a})(?=({trail}))") for a in alts]
        self.has_trail = trail is not None
        self.action = action
        self.token_back = token_back
        self.resume_back = resume_back


_RULES = [_Rule(*spec) for spec in _RULE_SPECS]


# Fast paths, equivalent to the full rule search. At " " or "\t" only the skip rule matches, and it takes
# the whole run of spaces (U+00A0, U+3000 ... included: those can also start a LIKELYURL, so alone they go
# the long way). A run of ASCII letters followed by " ", "\t", "\n" or the end is a WORD token (every rule
# that could match more there needs a character other than a letter: "'", ".", "@", "-", "/", "+", "#", "$"
# ...), except the split assimilations.
_FAST_SPACES = re.compile(SPACES)
_FAST_WORD = re.compile(r"[A-Za-z]+(?=[ \t\n]|\Z)")
_ASSIMILATED = frozenset({"cannot", "gonna", "gotta", "lemme", "gimme", "wanna"})


def _lex(text: str) -> Iterable[str | object]:
    """Yield the tokens of ``text`` (and ``_NEWLINE_TOKEN`` per line break), before lower-casing."""
    pos, n = 0, len(text)
    rules = _RULES
    fast_spaces, fast_word = _FAST_SPACES.match, _FAST_WORD.match
    while pos < n:
        ch = text[pos]
        if ch == " " or ch == "\t":
            pos = fast_spaces(text, pos).end()
            continue
        m = fast_word(text, pos)
        if m is not None and (m.end() - pos > 6 or m.group().lower() not in _ASSIMILATED):
            yield m.group()
            pos = m.end()
            continue
        best_len = -1
        best_rule = None
        best_end = pos
        for rule in rules:
            for rx in rule.alts:
                m = rx.match(text, pos)
                if m is None:
                    continue
                if rule.has_trail:
                    total = m.end(1) - pos
                else:
                    total = m.end() - pos
                if total > best_len:
                    best_len, best_rule, best_end = total, rule, m.end()
        assert best_rule is not None  # the catch-all matches any character but "\n"; NEWLINE matches "\n"
        action = best_rule.action
        if action is _NEWLINE_TOKEN:
            yield _NEWLINE_TOKEN
        elif action is not None:
            yield action(text[pos:best_end - best_rule.token_back])
        pos = best_end - best_rule.resume_back


_ASTRAL = re.compile("[\U00010000-\U0010ffff]")
_PAIR = re.compile("[\ud800-\udbff][\udc00-\udfff]")
_LONE = re.compile("[\ud800-\udfff]")


def _split_astral(m: re.Match) -> str:
    cp = ord(m.group()) - 0x10000
    return chr(0xD800 + (cp >> 10)) + chr(0xDC00 + (cp & 0x3FF))


def _join_pair(m: re.Match) -> str:
    hi, lo = m.group()
    return chr(0x10000 + ((ord(hi) - 0xD800) << 10) + (ord(lo) - 0xDC00))


def _to_utf16_units(text: str) -> str:
    """Java sees characters outside the BMP as two UTF-16 code units; so does the lexer here."""
    return _ASTRAL.sub(_split_astral, text) if _ASTRAL.search(text) else text


def _from_utf16_units(tok: str) -> str:
    """Re-join surrogate pairs; a lone surrogate left in a token is printed by Java's UTF-8 writer as '?'."""
    if _LONE.search(tok) is None:
        return tok
    return _LONE.sub("?", _PAIR.sub(_join_pair, tok))


def _lower(tok: str) -> str:
    return _from_utf16_units(tok).lower()


def ptb_tokens(text: str) -> list[str]:
    """The lower-cased PTB tokens of one text, before the punctuation filter (for inspection)."""
    return [_lower(t) for t in _lex(_to_utf16_units(_clean(text))) if t is not _NEWLINE_TOKEN]


def _clean(text: str) -> str:
    return _LINEBREAKS.sub(" ", (text or "").replace("\n", " "))


def ptb_tokenize(texts: Sequence[str]) -> list[str]:
    """pycocoevalcap's tokenisation of ``texts`` (one call of its PTBTokenizer): lower-cased PTB tokens
    without the punctuation tokens, joined by single spaces. ``""`` for a text with no tokens left."""
    stream = _to_utf16_units(_NL.join(_clean(t) for t in texts))
    # Print the tokens as PTBTokenizer -preserveLines does (space-separated, a newline per NEWLINE token),
    # then split the output into lines: a token can contain a line break (an SGML tag whose quoted attribute
    # spans two captions), and Java prints it as it is.
    parts: list[str] = []
    at_line_start = True
    for tok in _lex(stream):
        if tok is _NEWLINE_TOKEN:
            parts.append("\n")
            at_line_start = True
        else:
            if not at_line_start:
                parts.append(" ")
            parts.append(_lower(tok))
            at_line_start = False
    lines = "".join(parts).split("\n")
    # exactly pycocoevalcap: ' '.join(w for w in line.rstrip().split(' ') if w not in PUNCTUATIONS)
    return [" ".join(w for w in line.rstrip().split(" ") if w not in PUNCTUATIONS)
            for line in lines[:len(texts)]]
