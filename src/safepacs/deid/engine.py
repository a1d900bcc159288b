"""Header de-identification: walk the dataset once, decide per element from the table.

``deidentify(ds, options, keys) -> (ds, delta)`` is pure: no files, no clock, no database.
Every element at every depth (sequences, nested sequences, file meta) gets exactly one
decision:

1. Listed in PS3.15 Table E.1-1: the row's action under the options in force.
2. Private (odd group): removed, unless Retain Safe Private and the element is on the
   reviewed safe-private list.
3. Not listed: kept only if its VR cannot carry identity (numbers, coded CS values, known
   well-known UIDs, pixel/LUT binary data) or it is on the reviewed keep-list; other
   unlisted UIDs are remapped; anything else that can carry text is removed (fail closed).

Combined actions (X/Z, X/D, X/Z/D, Z/D) are resolved to the conformant alternative (Z or D)
because replacing a present attribute never breaks IOD conformance while removing a Type 1
or Type 2 one does, and an empty or dummy value carries no identity either.  For a sequence,
a combined action keeps the items and decides inside them (an empty sequence is invalid where
the sequence is Type 1 or 3).
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from pydicom import Dataset, config
from pydicom.charset import python_encoding
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.uid import UID_dictionary

from safepacs import __version__
from safepacs.deid.actions import (
    BINARY_VRS,
    NUMERIC_VRS,
    TEXT_VRS,
    dummy_value,
    public_vr,
    shift_date,
    shift_datetime,
    vr_of,
)
from safepacs.deid.burnedin import burned_in_risk
from safepacs.deid.delta import META, IdentityDelta, Path
from safepacs.deid.keys import Keys
from safepacs.deid.mislabelled import SPECIFIC_CHARACTER_SET, read_as_written
from safepacs.deid.options import CLEAN_PIXEL_DATA_CODE, Options
from safepacs.deid.policy import Policy, load_policy, safe_private_tags
from safepacs.deid.profile import Profile, load_profile
from safepacs.dicom.io import read_value
from safepacs.errors import InvalidDicom, RejectedFile

#: ImplementationClassUID of files safepacs writes (a 2.25 UID derived from a fixed UUID).
IMPLEMENTATION_CLASS_UID = "2.25." + str(uuid.uuid5(uuid.NAMESPACE_URL, "urn:safepacs").int)
IMPLEMENTATION_VERSION_NAME = "SAFEPACS_" + __version__.replace(".", "")[:7]

_COMBINED = {"X/Z": "Z", "X/D": "D", "X/Z/D": "D", "Z/D": "D", "X/Z/U*": "U"}
_META_KEEP = {0x00020000, 0x00020001, 0x00020002, 0x00020010}
_PATIENT_ID = 0x00100020
#: SH, cleaned (C) under Retain Longitudinal Modified Dates: a whole-day shift leaves it as it is
_TIMEZONE_OFFSET_FROM_UTC = 0x00080201
_CODE_MEANING = 0x00080104
_CODING_SCHEME = 0x00080102
_MARKS = {
    "PatientIdentityRemoved": 0x00120062,
    "DeidentificationMethod": 0x00120063,
    "DeidentificationMethodCodeSequence": 0x00120064,
    "LongitudinalTemporalInformationModified": 0x00280303,
}


def deidentify(ds: Dataset, options: Options, keys: Keys) -> tuple[Dataset, IdentityDelta]:
    """Return a de-identified copy of ``ds`` and the identity delta; ``ds`` is unchanged.

    Raises :class:`InvalidDicom` for a dataset that cannot be processed safely and
    :class:`RejectedFile` when policy refuses it (burned-in text risk).
    """
    out = copy.deepcopy(ds)
    return out, deidentify_inplace(out, options, keys)


def deidentify_inplace(
    ds: Dataset,
    options: Options,
    keys: Keys,
    *,
    profile: Profile | None = None,
    policy: Policy | None = None,
    known_identifiers: object | None = None,
    pixels_cleaned: bool = False,
) -> IdentityDelta:
    """De-identify ``ds`` in place (the batch runner's fast path) and return the delta.

    ``known_identifiers`` (an :class:`~safepacs.deid.identifiers.Identifiers`) adds
    identity known from the patient's other files to what free-text cleaning removes.
    ``pixels_cleaned`` is the caller's promise that it cleans the pixel data afterwards
    (:mod:`safepacs.deid.pixels`); without it a file at risk of burned-in text is refused
    unless the options accept the risk, so this pure function never fails open.
    """
    # text in another set than declared, or a declaration spelled otherwise: read as written
    relabelled = read_as_written(ds)
    check_character_set(ds)
    if not options.accept_burned_in_risk and not pixels_cleaned:
        reason = burned_in_risk(ds)
        if reason:
            raise RejectedFile(
                f"may contain burned-in identity ({reason}); pixel cleaning is off, pass "
                "--clean-pixels to clean it or --accept-burned-in-risk to process it anyway"
            )
    walker = _Walker(ds, options, keys, profile or load_profile(), policy or load_policy())
    if relabelled is not None:
        walker.delta.keep((), SPECIFIC_CHARACTER_SET, relabelled.original, relabelled.declared, ds)
        walker.unsure_text = relabelled.mixed
    if known_identifiers is not None and walker._ids is not None:
        walker._ids = walker._ids.union(known_identifiers)
    walker.walk(ds, (), "normal", ds._character_set)
    preamble = getattr(ds, "preamble", None)
    if preamble and any(preamble) and len(preamble) == 128:  # written zeroed: kept for restore
        walker.delta.preamble = bytes(preamble)
    if getattr(ds, "file_meta", None) is not None:
        walker.walk_meta(ds.file_meta)
    walker.mark(ds)
    if getattr(ds, "file_meta", None) is not None:
        walker.sync_meta(ds)
    return walker.delta


def check_character_set(ds: Dataset) -> None:
    """Refuse character sets we cannot decode: unreadable text cannot be scrubbed."""
    elem = ds.get_item(0x00080005)
    if elem is None:
        return
    value = elem.value
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace").split("\\")
    terms = [value] if isinstance(value, str) else list(value or [])
    for term in terms:
        term = (term or "").strip()
        if term and term not in python_encoding:
            shown = term if term.replace(" ", "").replace("_", "").isalnum() and len(term) <= 16 else "?"
            raise InvalidDicom(f"unknown SpecificCharacterSet term '{shown}'")


def patient_key(ds: Dataset) -> str:
    """The identity that the per-patient date offset is derived from."""
    pid = text_value(ds, _PATIENT_ID).strip()
    issuer = text_value(ds, 0x00100021).strip()
    if pid:
        return f"{pid}^{issuer}"
    return "name:" + text_value(ds, 0x00100010).strip().upper()


def text_value(ds: Dataset, tag: int) -> str:
    """The value of ``tag`` as text ("" when absent), read without converting the element in
    ``ds``: converted, a value padded with NUL (GE writes them) is written back padded with a
    space, and neither the output nor a restored original keeps its bytes."""
    if tag not in ds:
        return ""
    return str(read_value(ds, tag).value or "")


def _texts(elem: DataElement | RawDataElement) -> list[str]:
    """The values of a short text element (read or still bytes), stripped of padding.
    Bytes are read as ASCII, which every value compared with them is: anything else
    matches nothing."""
    value = elem.value
    if isinstance(value, bytes):
        values: list = value.decode("ascii", "replace").rstrip("\x00 ").split("\\")
    elif isinstance(value, str):
        values = [value]
    else:
        values = list(value or [])
    return [str(v).strip().rstrip("\x00") for v in values]


def _new(tag: int, vr: str, value: object) -> DataElement:
    """A new element; our own values are valid by construction, so pydicom's per-value
    validation (a measurable share of the run) is skipped."""
    return DataElement(tag, vr, value, validation_mode=config.IGNORE)


def patient_pseudonym(ds: Dataset, keys: Keys) -> str:
    """The PatientID that de-identification gives this (original) dataset."""
    return keys.pseudonym("PatientID", text_value(ds, _PATIENT_ID))


def _is_empty(elem: DataElement | RawDataElement) -> bool:
    """Empty without decoding: a raw value of only padding counts as empty."""
    if isinstance(elem, RawDataElement):
        value = elem.value
        return value is None or not bytes(value).strip(b" \x00")
    return elem.is_empty


#: :meth:`_Walker.decide`'s answer for a retained safe private element: copied untouched,
#: items included
KEEP_AS_IS = "="


@dataclass
class _Walker:
    root: Dataset
    options: Options
    keys: Keys
    profile: Profile
    policy: Policy

    def __post_init__(self) -> None:
        self.delta = IdentityDelta()
        self._charset: object = self.root._character_set
        self._offset: int | None = None
        self._patient_key = patient_key(self.root)
        self._ids = None
        #: text in two character sets: cleaning cannot match across them (see _clean)
        self.unsure_text = False
        o = self.options
        if o.clean_descriptors or o.clean_structured_content or o.clean_graphics:
            # Collected before anything changes: cleaning removes what the header knows.
            from safepacs.deid.identifiers import collect_identifiers

            self._ids = collect_identifiers(self.root).with_private_text(self.root)

    # --- lazily derived context ---------------------------------------------------
    @property
    def date_offset(self) -> int:
        if self._offset is None:
            self._offset = self.keys.date_offset_days(self._patient_key)
        return self._offset

    # --- the walk -----------------------------------------------------------------
    def walk(self, ds: Dataset, path: Path, mode: str, charset: object) -> None:
        """Apply one decision to every element of ``ds``.

        ``mode`` says what happens to unlisted text inside a sequence the table asked to
        dummy ("D") or clean ("C"): there it is dummied or cleaned instead of removed, so
        structured content keeps its shape.
        """
        if "SpecificCharacterSet" in ds:
            charset = ds._character_set
        self._charset = charset
        private_keep = safe_private_tags(ds, self.policy) if self.options.retain_safe_private else None
        local_code = _CODE_MEANING in ds and not self._standard_scheme(ds)
        for elem in list(ds._dict.values()):  # order is irrelevant: one decision per element
            tag = int(elem.tag)  # plain ints: BaseTag's __eq__ is slow in set/dict lookups
            vr = vr_of(elem)
            action = self.decide(tag, vr, elem, mode, private_keep, local_code)
            if action == KEEP_AS_IS:
                continue
            self._apply(ds, path, tag, vr, action, mode)

    def decide(
        self, tag: int, vr: str, elem: DataElement | RawDataElement, mode: str,
        private_keep: set[int] | None, local_code: bool,
    ) -> str:
        """The one decision for an element (``KEEP_AS_IS``, or an action for ``_apply``).

        Shared with the byte-level fast path (:mod:`safepacs.deid.fastpath`), so that both
        paths decide alike by construction.
        """
        group = tag >> 16
        if not tag & 0xFFFF and group > 2:  # retired group lengths
            return "X"
        if 0x6000 <= group <= 0x601E:
            # Overlay planes: the bitmap may hold burned-in text that cannot be cleaned
            # without OCR, and an overlay without its data is not conformant, so the whole
            # plane goes (Overlay Data is X in the basic profile).
            return "X"
        if group & 1:
            return KEEP_AS_IS if private_keep is not None and tag in private_keep else "X"
        if local_code and tag == _CODE_MEANING:
            # A local code's meaning is text typed by people: clean it, or dummy it.
            return "C" if self._ids is not None else "D"
        row = self.profile.row_for(tag)
        if row is None:
            return self._unlisted(tag, vr, elem, mode)
        action = row.action(self.options)
        if action == "X" and tag in self.policy.empty_tags:
            return "Z"  # Type 2C where the IOD asks for it (an animal's responsible person)
        if action == "X" and tag in self.policy.dummy_tags:
            return "D"  # Type 1 where the IOD asks for it (a presentation state's creation date)
        if vr == "SQ" and action in _COMBINED:
            # An emptied sequence breaks Type 1/3 sequences; keeping the items and
            # deciding inside (UIDs remapped, text dummied) breaks nothing.
            return "D"
        return _COMBINED.get(action, action)

    def _standard_scheme(self, ds: Dataset) -> bool:
        scheme = text_value(ds, _CODING_SCHEME).strip().upper()
        return scheme in self.policy.standard_schemes

    def _unlisted(self, tag: int, vr: str, elem: DataElement | RawDataElement, mode: str) -> str:
        if vr == "UN" and not tag >> 16 & 1:
            vr = public_vr(tag) or vr  # a standard element written as UN is what its tag says
        if vr == "SQ":
            return "U"  # walk inside; the items' elements get their own decisions
        labelled = tag in self.policy.descriptor_tags  # typed by people, whatever the VR
        if labelled and self.options.clean_descriptors and (vr in TEXT_VRS or vr == "CS"):
            return "C"  # a segment's "Liver" stays, a name typed into it goes
        if vr in NUMERIC_VRS or (vr == "CS" and not labelled) or tag in self.policy.keep_tags:
            return "K"
        if tag in self.policy.defined_values and self.policy.has_defined_values(tag, _texts(elem)):
            return "K"  # "application/pdf": what the standard allows there, nobody's name
        if vr == "UI":
            return "K" if self._all_registered_uids(elem) else "U"
        if vr in BINARY_VRS or vr.startswith("O"):
            keep = tag in self.policy.binary_keep_tags or (tag >> 16) in self.policy.binary_keep_groups
            return "K" if keep else "X"
        if vr in TEXT_VRS and mode in ("D", "C") and tag in self.policy.free_text_tags:
            return mode
        if tag in self.policy.dummy_tags:
            return "D"
        if tag in self.policy.empty_tags:
            return "Z"
        return "X"

    def _all_registered_uids(self, elem: DataElement | RawDataElement) -> bool:
        return all(v in UID_dictionary for v in _texts(elem) if v)

    def _apply(self, ds: Dataset, path: Path, tag: BaseTag, vr: str, action: str, mode: str) -> None:
        if action == "K":
            if vr == "SQ":
                self._walk_items(ds, path, tag, "normal")
            return
        if action == "X":
            self._remove(ds, path, tag)
            return
        if vr == "SQ":
            if action == "Z":
                self._replace(ds, path, tag, _new(tag, "SQ", Sequence()))
            else:  # D, U, C: keep the structure, decide inside
                self._walk_items(ds, path, tag, {"D": "D", "C": "C"}.get(action, mode))
            return
        if action in ("Z", "D") and vr != "UI" and tag != _PATIENT_ID:
            # No need to decode a value that is about to be replaced (the hot path).
            if not _is_empty(ds.get_item(tag)):
                value = dummy_value(vr) if action == "D" else (None if vr in BINARY_VRS else "")
                self._replace(ds, path, tag, _new(tag, vr, value))
            return
        elem = read_value(ds, tag)  # the value, while the delta records the element as read
        if action == "Z":
            if not elem.is_empty:
                self._replace(ds, path, tag, _new(tag, vr, None if vr in BINARY_VRS else ""))
        elif action in ("U", "D") and vr == "UI":
            self._replace_uids(ds, path, tag, elem)
        elif action == "D":
            if not elem.is_empty:
                self._replace(ds, path, tag, _new(tag, vr, self._pseudonymous_id(elem)))
        elif action == "U":
            self._replace_uids(ds, path, tag, elem)
        elif action == "C":
            self._clean(ds, path, tag, vr, elem)
        else:  # unknown action: fail closed
            self._remove(ds, path, tag)

    def _walk_items(self, ds: Dataset, path: Path, tag: BaseTag, mode: str) -> None:
        seq = ds[tag].value
        charset = self._charset
        for index, item in enumerate(seq or []):
            self.walk(item, path + (int(tag), index), mode, charset)
        self._charset = charset

    # --- value actions ------------------------------------------------------------
    def _pseudonymous_id(self, elem: DataElement) -> str:
        return self.keys.pseudonym("PatientID", str(elem.value or ""))

    def _replace_uids(self, ds: Dataset, path: Path, tag: BaseTag, elem: DataElement) -> None:
        if elem.is_empty:
            return
        if elem.VM > 1:
            value = [self.keys.uid(str(v)) for v in elem.value]
        else:
            value = self.keys.uid(str(elem.value))
        self._replace(ds, path, tag, _new(tag, "UI", value))

    def _clean(self, ds: Dataset, path: Path, tag: BaseTag, vr: str, elem: DataElement) -> None:
        """Clean (C): keep the information but not the identity."""
        if elem.is_empty:
            return
        dated = self.options.retain_long_modified_dates
        if vr == "DA":
            shift: Callable[[str, int], str] = shift_date
        elif vr == "DT":
            shift = shift_datetime
        else:
            shift = None  # type: ignore[assignment]
        if shift is not None:
            if not dated:
                self._replace(ds, path, tag, _new(tag, vr, dummy_value(vr)))
                return
            values = elem.value if elem.VM > 1 else [elem.value]
            new = [shift(str(v), self.date_offset) for v in values]
            self._replace(ds, path, tag, _new(tag, vr, new if elem.VM > 1 else new[0]))
        elif vr == "TM" or tag == _TIMEZONE_OFFSET_FROM_UTC:
            return  # whole-day shifts keep times, and their offset from UTC, coherent
        elif vr in ("LO", "LT", "SH", "ST", "UT", "UC"):
            if self.unsure_text:
                # a name written in one set cannot be found in text written in another:
                # when unsure whether text holds identity, remove it
                self._remove(ds, path, tag)
                return
            from safepacs.deid.freetext import scrub_text
            from safepacs.deid.identifiers import strip_escapes

            values = list(elem.value) if elem.VM > 1 else [elem.value]
            # pydicom 3.0 leaves ISO 2022 escape sequences inside decoded IR 58 text; names
            # must match across them, and the writer re-inserts what the charset needs.
            dates = not self.options.retain_long_full_dates  # shifted or removed elsewhere
            new = [scrub_text(strip_escapes(str(v)), self._ids, dates=dates) for v in values]
            if new != [str(v) for v in values]:
                self._replace(ds, path, tag, _new(tag, vr, new if elem.VM > 1 else new[0]))
        elif vr == "PN":
            self._replace(ds, path, tag, _new(tag, vr, dummy_value(vr)))
        elif vr == "CS":
            # a label people typed ("LIVER_SEG"): kept unless it holds an identifier, as a
            # code string cannot hold the cleaner's "***"
            from safepacs.deid.freetext import scrub_text

            values = [str(v) for v in (elem.value if elem.VM > 1 else [elem.value])]
            spaced = [v.replace("_", " ") for v in values]  # ZHANG_WEI: the name's words
            if any(scrub_text(v, self._ids, dates=True) != v for v in spaced):
                self._replace(ds, path, tag, _new(tag, vr, dummy_value(vr)))
        elif vr == "UI":
            self._replace_uids(ds, path, tag, elem)
        else:
            self._remove(ds, path, tag)

    # --- file meta and marking ----------------------------------------------------
    def walk_meta(self, meta: Dataset) -> None:
        for elem in list(meta.elements()):
            tag = BaseTag(elem.tag)
            path = (META,)
            if tag in _META_KEEP:
                continue
            if tag == 0x00020003 and not self.options.retain_uids:
                self._replace_uids(meta, path, tag, read_value(meta, tag))
            elif tag == 0x00020003:
                continue
            elif tag == 0x00020012:
                self._replace(meta, path, tag, _new(tag, "UI", IMPLEMENTATION_CLASS_UID))
            elif tag == 0x00020013:
                self._replace(meta, path, tag, DataElement(tag, "SH", IMPLEMENTATION_VERSION_NAME))
            else:  # source/sending/receiving AE titles, addresses, private information
                self._remove(meta, path, tag)
        # Always written by safepacs (pydicom adds the version if absent): record them so
        # that restore reproduces the original meta exactly (a meta group without its length
        # is seen in the wild; the value here is a placeholder, the writer computes it).
        if 0x00020000 not in meta:
            self._replace(meta, (META,), BaseTag(0x00020000), DataElement(0x00020000, "UL", 0))
        if 0x00020001 not in meta:
            self._replace(meta, (META,), BaseTag(0x00020001),
                          DataElement(0x00020001, "OB", b"\x00\x01"))
        for tag, vr, value in ((0x00020012, "UI", IMPLEMENTATION_CLASS_UID),
                               (0x00020013, "SH", IMPLEMENTATION_VERSION_NAME)):
            if tag not in meta:
                self._replace(meta, (META,), BaseTag(tag), _new(tag, vr, value))

    def sync_meta(self, ds: Dataset) -> None:
        """Media Storage SOP Class/Instance UIDs always match the dataset that follows."""
        for meta_tag, ds_tag in ((0x00020002, 0x00080016), (0x00020003, 0x00080018)):
            value = ds.get(ds_tag)
            if value is None or value.is_empty:
                continue
            current = ds.file_meta.get(meta_tag)
            if current is None or current.value != value.value:
                tag = BaseTag(meta_tag)
                self._replace(ds.file_meta, (META,), tag, _new(tag, "UI", value.value))

    def mark(self, ds: Dataset) -> None:
        """PatientIdentityRemoved, DeidentificationMethod(+CodeSequence), temporal flag."""
        for tag, vr, value in mark_elements(self.options):
            self._replace(ds, (), tag, _new(tag, vr, value))

    # --- recording ----------------------------------------------------------------
    # The hot path touches the dataset's element dict directly: pydicom's item access
    # re-normalises the tag and checks private blocks on every call, which costs more than
    # the decision itself.  Sequences still go through pydicom (it links items to parents).
    def _remove(self, ds: Dataset, path: Path, tag: int) -> None:
        original = ds._dict.pop(tag, None)
        self.delta.keep(path, tag, original, self._charset, ds)

    def _replace(self, ds: Dataset, path: Path, tag: int, new: DataElement) -> None:
        self.delta.keep(path, tag, ds._dict.get(tag), self._charset, ds)
        if new.VR == "SQ":
            ds[tag] = new
        else:
            ds._dict[BaseTag(tag)] = new


def mark_elements(options: Options) -> list[tuple[int, str, object]]:
    """(tag, VR, value) of the marks a de-identified object carries under ``options``:
    PatientIdentityRemoved, DeidentificationMethod(+CodeSequence) and the temporal flag."""
    codes = options.method_codes()
    items = []
    for value, meaning in codes:
        item = Dataset()
        item.CodeValue = value
        item.CodingSchemeDesignator = "DCM"
        item.CodeMeaning = meaning
        items.append(item)
    if options.retain_long_full_dates:
        temporal = "UNMODIFIED"
    elif options.retain_long_modified_dates:
        temporal = "MODIFIED"
    else:
        temporal = "REMOVED"
    method = ["SAFEPACS " + __version__ + " PS3.15 E.1-1 BASIC PROFILE"]
    method += [meaning.upper()[:64] for _, meaning in codes[1:]]
    return [
        (_MARKS["PatientIdentityRemoved"], "CS", "YES"),
        (_MARKS["DeidentificationMethod"], "LO", method),
        (_MARKS["DeidentificationMethodCodeSequence"], "SQ", Sequence(items)),
        (_MARKS["LongitudinalTemporalInformationModified"], "CS", temporal),
    ]


def mark_pixels_cleaned(ds: Dataset, delta: IdentityDelta) -> None:
    """After Clean Pixel Data ran: add code 113101 and its method text, and set
    BurnedInAnnotation to NO (the originals go into ``delta`` for restore)."""
    code, meaning = CLEAN_PIXEL_DATA_CODE
    seq_tag = _MARKS["DeidentificationMethodCodeSequence"]
    if seq_tag in ds and any(str(i.get("CodeValue", "")) == code for i in ds[seq_tag].value):
        return
    item = Dataset()
    item.CodeValue = code
    item.CodingSchemeDesignator = "DCM"
    item.CodeMeaning = meaning
    delta.record((), ds, seq_tag)
    items = list(ds[seq_tag].value) if seq_tag in ds else []
    # CID 7050 order: the basic profile first, then the options by code value
    items.insert(1 if items else 0, item)
    ds[seq_tag] = _new(seq_tag, "SQ", Sequence(items))
    method_tag = _MARKS["DeidentificationMethod"]
    delta.record((), ds, method_tag)
    method = list(ds[method_tag].value) if method_tag in ds and ds[method_tag].VM > 1 else (
        [str(ds[method_tag].value)] if method_tag in ds else []
    )
    method.insert(1 if method else 0, meaning.upper()[:64])
    ds[method_tag] = _new(method_tag, "LO", method)
    burned = 0x00280301
    delta.record((), ds, burned)
    ds[burned] = _new(burned, "CS", "NO")
