"""Named benchmarks: one flag (``--suite NAME``) reproduces a paper table.

A suite is data: which dataset layouts to read under ``--data ROOT``, which perturbations each
part gets, and which detector families use another preprocessing protocol on which dataset.
The harness asks the suite's :class:`ScorePlan` which perturbations a record gets and with which
protocol a detector scores it, so one run writes one scores.csv and one leaderboard.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ..api.errors import DataError, SidbenchError
from ..api.log import note

if TYPE_CHECKING:
    from ..api.detector import Detector
    from ..api.records import Record


@dataclass(frozen=True)
class Part:
    """One dataset layout under the root, and the perturbations its records get (clean always); optionally
    only some of its splits, and a published subsampling of its records."""

    dataset: str
    perturb: str | None = None
    splits: tuple[str, ...] | None = None  # None: every split the layout finds
    sample: Callable[[list], list] | None = None  # records -> the records a paper's test script keeps


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    parts: tuple[Part, ...]
    # (detector family or name, dataset layout name, protocol): published protocols that differ
    # from a detector's default.
    protocols: tuple[tuple[str, str, str], ...] = ()


JPEG = "jpeg:40,65,90"  # the AID-challenge report's qualities (Saland, CRIStAL 2024)
PUBLISHED = (("rine", "synthbuster", "ten_crop"),)  # RINE scores Synthbuster with ten-crop averaging

# -- UniversalFakeDetect's own protocol (validate.py of WisconsinAIVision/UniversalFakeDetect) ---------------
# Its dataset_paths.py: 19 sets (no stylegan2), in this order; sitd is the seeingdark folder.
UNIVFD_SETS = ("progan", "cyclegan", "biggan", "stylegan", "gaugan", "stargan", "deepfake", "seeingdark", "san",
               "crn", "imle", "guided", "ldm_200", "ldm_200_cfg", "ldm_100", "glide_100_27", "glide_50_27",
               "glide_100_10", "dalle")
UNIVFD_EXTS = ("png", "jpg", "JPEG", "jpeg", "bmp")  # recursively_read: the second dot-field of the file name


def univfd_sample(records: list, max_sample: int = 1000, fallback: int = 100, seed: int = 0) -> list:
    """validate.py's per-set sampling: files whose name's second dot-field is an image extension; if either
    class has fewer than ``max_sample`` images, ``fallback`` per class instead; the reals, then the fakes,
    shuffled by Python's ``random`` seeded with ``seed`` before each set; the first n of each kept."""
    import random

    out = []
    for split in dict.fromkeys(r.split for r in records):
        recs = [r for r in records if r.split == split and _univfd_listed(r.path)]
        real, fake = [r for r in recs if r.label == 0], [r for r in recs if r.label == 1]
        n = fallback if max_sample > len(real) or max_sample > len(fake) else max_sample
        rng = random.Random(seed)  # set_seed() before each data set: random.seed(0)
        rng.shuffle(real)
        rng.shuffle(fake)
        out += real[:n] + fake[:n]
    return out


def _univfd_listed(path: str) -> bool:
    parts = Path(path).name.split(".")
    return len(parts) > 1 and parts[1] in UNIVFD_EXTS


SUITES = {s.name: s for s in (
    Suite("ufd", "the 20 UniversalFakeDetect test sets (CNNDetection + diffusion_datasets), clean",
          (Part("ufd"),)),
    Suite("ufd-univfd", "UniversalFakeDetect's validate.py: its 19 sets (no stylegan2), at most 1000 seeded "
          "images per class (100 when a class has fewer), clean; mean:all = its average",
          (Part("ufd", splits=UNIVFD_SETS, sample=univfd_sample),)),
    Suite("synthbuster", "Synthbuster's 9 generators against all RAISE-1k reals, clean (RINE: ten-crop)",
          (Part("synthbuster"),), PUBLISHED),
    Suite("jpeg", "the 20 UniversalFakeDetect sets at JPEG 40/65/90, plus clean",
          (Part("ufd", JPEG),)),
    Suite("paper", "UniversalFakeDetect clean and at JPEG 40/65/90, and Synthbuster; each detector with "
          "its published protocol (RINE on Synthbuster: ten-crop)",
          (Part("ufd", JPEG), Part("synthbuster")), PUBLISHED),
)}

# The test sets read from their own layouts (datasets/genimage.py, aigcdetect.py, wildrf.py, chameleon.py):
# each suite keeps the layout's published splits and names any other set it found.
SUITES.update({s.name: s for s in (
    Suite("genimage", "GenImage: the 8 generators' val/ sets, each its ImageNet reals against its fakes, clean",
          (Part("genimage"),)),
    Suite("aigcdetect", "the 16 AIGCDetectBenchmark test sets (8 GAN, 8 GenImage generators), clean",
          (Part("aigcdetect"),)),
    Suite("wildrf", "WildRF's 3 test platforms (reddit, twitter, facebook), clean", (Part("wildrf"),)),
    Suite("chameleon", "Chameleon's one test split, clean", (Part("chameleon"),)),
)})


def get_suite(name: str) -> Suite:
    if name not in SUITES:
        import difflib

        close = difflib.get_close_matches(name, SUITES, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise SidbenchError(f"unknown suite {name!r}.{hint} Known suites: {', '.join(SUITES)}")
    return SUITES[name]


@dataclass
class ScorePlan:
    """Per split: the dataset it came from and the perturbations it gets; protocol rules per detector."""

    dataset_of: dict[str, str] = field(default_factory=dict)
    perturbations_of: dict[str, set[str]] = field(default_factory=dict)
    protocols: tuple[tuple[str, str, str], ...] = ()
    everywhere: set[str] = field(default_factory=set)  # perturbations given with --perturb

    def wants(self, perturbation: str, record: "Record") -> bool:
        """Whether ``record`` is scored under ``perturbation`` (``none``: always)."""
        return (perturbation == "none" or perturbation in self.everywhere
                or perturbation in self.perturbations_of.get(record.split, ()))

    def protocol(self, detector: "Detector", record: "Record") -> str | None:
        """The published protocol of ``detector`` on ``record``'s dataset, or None for its default."""
        dataset = self.dataset_of.get(record.split)
        for who, where, protocol in self.protocols:
            if where == dataset and who in (detector.name, detector.name.split(".", 1)[0]):
                return protocol
        return None


def published_only(suite: str, dataset: str, layout: Any, records: list) -> list:
    """The records of the layout's published test splits (all when it names none); one line names the rest."""
    keep = getattr(layout, "published", None)
    if not keep:
        return records
    extra = sorted({r.split for r in records} - set(keep))
    if extra:
        note(f"--suite {suite}: {dataset} sets outside its published protocol, left out: {', '.join(extra)}")
    return [r for r in records if r.split in set(keep)]


def part_records(layout: Any, roots: list[Path], part: Part) -> list:
    """The records of one suite part from every root its layout recognises (UFD's ``datasets/test`` and
    ``diffusion_datasets`` given as two roots); a split two roots both hold is refused."""
    from ..data.trees import reading_roots

    recs, root_of = [], {}
    with reading_roots(roots):
        for root in roots:
            got = layout.records(root, role="test", **({"splits": part.splits} if part.splits else {}))
            for split in sorted({r.split for r in got}):
                if root_of.setdefault(split, root) != root:
                    raise DataError(f"--suite: split {split!r} is in both {root_of[split]} and {root}; "
                                    "give one of them")
            recs += got
    return recs


def suite_data(name: str, roots: list[str], plugins: Any, perturb: str | None = None) -> tuple[list, ScorePlan, str]:
    """The suite's records under ``roots``, its plan, and the merged ``--perturb`` string."""
    from ..api.specs import resolve_factory
    from ..data.perturb import parse_perturbations

    suite = get_suite(name)
    user = {p.name for p in parse_perturbations(perturb, plugins, include_clean=False)}
    plan = ScorePlan(protocols=suite.protocols, everywhere=user)
    records, found = [], []
    for part in suite.parts:
        layout = resolve_factory(plugins.dataset(part.dataset).factory)()
        matching = [Path(r).expanduser() for r in roots if layout.matches(Path(r).expanduser())]
        if not matching:
            continue
        recs = part_records(layout, matching, part)
        recs = published_only(name, part.dataset, layout, recs)
        recs = part.sample(recs) if part.sample is not None else recs
        perts = {p.name for p in parse_perturbations(part.perturb, plugins, include_clean=False)}
        for r in recs:
            plan.dataset_of.setdefault(r.split, part.dataset)
            plan.perturbations_of.setdefault(r.split, set()).update(perts)
        records += recs
        found.append(part.dataset)
    missing = [p.dataset for p in suite.parts if p.dataset not in found]
    if not records:
        raise DataError(f"--suite {name}: no {' or '.join(missing)} data under {', '.join(roots)}; "
                        "see the README's 'Benchmarks and data layouts' section")
    if missing:
        logging.getLogger("sidbench").warning(f"--suite {name}: no {', '.join(missing)} data under "
                                              f"{', '.join(roots)}; running the rest")
    merged = ";".join(filter(None, [perturb, *(p.perturb for p in suite.parts if p.dataset in found)]))
    return records, plan, merged or None
