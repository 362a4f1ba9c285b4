"""Small synthetic corpora for router tests, built for real with ``build_corpus``.

Four clearly separated topics, one category each (a handful of short documents),
counted with the ``chars`` tokenizer so sizes are predictable and no model is needed
to build; the router's index is built with the real all-MiniLM-L6-v2.
"""

from __future__ import annotations

from pathlib import Path

from ragcache.corpus.compile import BuildResult, build_corpus
from ragcache.router.index import index_step

TOPICS: dict[str, dict[str, str]] = {
    "astronomy": {
        "telescopes.md": (
            "# Telescopes\n\nA refracting telescope gathers starlight with an objective lens; a reflecting "
            "telescope uses a curved primary mirror. Aperture decides how faint a galaxy or nebula you can see, "
            "and magnification is the focal length of the telescope divided by that of the eyepiece.\n"
        ),
        "planets.md": (
            "# Planets\n\nJupiter is the largest planet of the solar system, a gas giant with the Great Red Spot "
            "and dozens of moons. Saturn's rings are made of ice. Mars is a cold desert planet with the volcano "
            "Olympus Mons. Planets orbit the Sun on elliptical orbits described by Kepler's laws.\n"
        ),
        "stars.md": (
            "# Stars\n\nStars fuse hydrogen into helium in their cores. A red giant is an old star that has swollen; "
            "a supernova is the explosion of a massive star, which may leave a neutron star or a black hole.\n"
        ),
    },
    "cooking": {
        "bread.md": (
            "# Baking bread\n\nMix flour, water, salt and yeast into a dough, knead it for ten minutes until it is "
            "smooth and elastic, let it rise until doubled, shape the loaf and bake it in a hot oven at 230 degrees "
            "until the crust is brown and the loaf sounds hollow.\n"
        ),
        "sauces.md": (
            "# Sauces\n\nA roux of butter and flour thickens a bechamel sauce made with milk. Tomato sauce simmers "
            "garlic, olive oil and crushed tomatoes; season with basil and salt. Reduce a pan sauce with wine.\n"
        ),
        "knives.md": (
            "# Kitchen knives\n\nA chef's knife chops onions and herbs; keep the blade sharp with a whetstone and "
            "hone it on a steel before cooking. Cut on a wooden board.\n"
        ),
    },
    "gardening": {
        "tomatoes.md": (
            "# Growing tomatoes\n\nSow tomato seeds indoors six weeks before the last frost, half a centimetre deep. "
            "Transplant seedlings into the garden bed when nights are warm, stake the plants, water the roots "
            "deeply twice a week and harvest the tomatoes when they are fully red.\n"
        ),
        "soil.md": (
            "# Garden soil\n\nCompost improves garden soil: it feeds earthworms and holds moisture. Mulch the beds "
            "with straw to keep weeds down. Test the soil pH; most vegetables like slightly acidic soil.\n"
        ),
        "pruning.md": (
            "# Pruning\n\nPrune fruit trees and roses in late winter with clean shears; remove dead wood and "
            "crossing branches so light reaches the centre of the plant.\n"
        ),
    },
    "networking": {
        "tcp.md": (
            "# TCP\n\nTCP opens a connection with a three-way handshake (SYN, SYN-ACK, ACK), numbers every byte, "
            "retransmits lost segments and slows down on congestion with a congestion window.\n"
        ),
        "dns.md": (
            "# DNS\n\nThe Domain Name System resolves host names to IP addresses. A resolver asks root servers, "
            "then top-level domain servers, then the authoritative name server; answers are cached for their TTL.\n"
        ),
        "routers.md": (
            "# IP routing\n\nA network router forwards IP packets by the longest matching prefix in its routing "
            "table; BGP exchanges routes between autonomous systems on the internet.\n"
        ),
    },
}

ORDER = ("astronomy", "cooking", "gardening", "networking")


def make_topic_corpus(root: Path, *, docs: dict[str, dict[str, str]] | None = None) -> Path:
    """Write a corpus folder with one category per topic (corpus order: ORDER)."""
    docs = docs or TOPICS
    lines = ["name: topics", "title: Four topics", "categories:"]
    for topic in ORDER:
        lines += [f"  - id: {topic}", f"    globs: ['{topic}/**']"]
    lines += ["build: {tokenizer: chars, chunk_tokens: 64, chunk_overlap: 8, min_block_tokens: 0,"]
    lines += ["        max_block_tokens: 4000, full_budget_tokens: 4000}"]
    root.mkdir(parents=True, exist_ok=True)
    (root / "corpus.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for topic, files in docs.items():
        for name, text in files.items():
            path = root / "docs" / topic / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    return root


def build_topics(tmp_path: Path, out: Path | None = None, **kwargs: object) -> BuildResult:
    """Build the topic corpus with the router index step (index cache kept inside ``tmp_path``)."""
    corpus = tmp_path / "topics"
    if not (corpus / "corpus.yaml").exists():
        make_topic_corpus(corpus)
    step = index_step(cache=tmp_path / "index-cache")
    return build_corpus(corpus, out or tmp_path / "build", steps=(step,), work_dir=tmp_path / "work", **kwargs)  # type: ignore[arg-type]
