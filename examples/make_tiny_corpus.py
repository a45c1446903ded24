"""Generate examples/tiny: 300 short documents about an invented world, in BEIR layout.

Deterministic (fixed seed, no external data): rerunning rewrites identical files. Each document
states one distinguishing fact (a town's craft, an animal's markings, a machine's purpose, ...);
each query paraphrases the fact of exactly one document. Run from anywhere:

    python examples/make_tiny_corpus.py
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Callable
from pathlib import Path

OUT = Path(__file__).resolve().parent / "tiny"
SEED = 20240611

PREFIXES = [
    "Bram", "Cor", "Dun", "Ell", "Fen", "Gal", "Hol", "Ist", "Jor", "Kel", "Lor", "Mar", "Nor",
    "Oss", "Pel", "Quen", "Ros", "Sel", "Tor", "Ul", "Ves", "Wyn", "Yar", "Zel", "Ash", "Brin",
    "Cald", "Dray", "Eld", "Firth",
]  # fmt: skip
TOWN_ENDS = ["ford", "mere", "wick", "holm", "stead", "by", "ton", "vale", "moor", "bridge",
             "haven", "ley", "thorpe", "combe"]  # fmt: skip
NAME_ENDS = ["a", "en", "ith", "o", "ara", "ius", "ette", "an", "wyn", "ora", "ic", "elle"]
SURNAMES = ["Kelmor", "Ashdown", "Brackwater", "Fennimore", "Galloway", "Hartwell", "Ivesby",
            "Larkspur", "Merriweather", "Northcott", "Pennywhistle", "Quillon", "Ravensworth",
            "Saltmarsh", "Thistlewood", "Underhill", "Vantongeren", "Whitlock", "Yellowlees",
            "Zandbergen", "Coldharbour", "Dunmore", "Esterly", "Foxley"]  # fmt: skip

REGIONS = ["in the northern hills", "on the salt coast", "in the river lowlands",
           "in the pine highlands", "in the eastern marshes", "on the chalk downs",
           "in the lake country", "in the red desert", "among the western fjords",
           "on the amber plains"]  # fmt: skip
RIVERS = ["Asker", "Bellow", "Corrin", "Dwale", "Emmet", "Frome", "Gannet", "Hollin", "Iver",
          "Jessop", "Kettle", "Lune"]  # fmt: skip
MATERIALS = ["copper", "willow", "blue glass", "slate", "walnut", "tin", "linen", "amber",
             "bone", "clay", "silver", "reed"]  # fmt: skip
OBJECTS = ["bells", "baskets", "lanterns", "clocks", "flutes", "combs", "kites", "bowls",
           "buttons", "spoons", "boats", "masks"]  # fmt: skip
TOWN_EXTRAS = [
    "A market is held in its square every {day}.",
    "About {pop} people live there.",
    "The town was founded in the year {year}.",
    "Its old stone bridge is painted {colour} each spring.",
    "Travellers reach it by a ferry across the {river2}.",
]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
COLOURS = ["orange", "violet", "green", "crimson", "yellow", "grey", "white", "black",
           "golden", "turquoise", "brown", "pink"]  # fmt: skip

FEATURES = {
    "beetle": ["wings", "spots", "stripes", "shell", "horns"],
    "heron": ["crest", "wings", "eyes", "legs", "tail"],
    "fern": ["fronds", "stems", "spores"],
    "moth": ["wings", "spots", "antennae", "stripes"],
    "lizard": ["stripes", "tail", "eyes", "scales", "frill"],
    "otter": ["fur", "whiskers", "tail", "paws"],
    "toad": ["spots", "eyes", "skin", "throat"],
    "finch": ["crest", "wings", "tail", "beak", "breast"],
    "mushroom": ["cap", "gills", "stem", "spots"],
    "eel": ["fins", "stripes", "eyes", "belly"],
    "orchid": ["petals", "leaves", "stem", "roots"],
    "bat": ["wings", "ears", "fur", "snout"],
}
WET = ["in salt marshes", "among river reeds", "in peat bogs", "in mill ponds", "in tidal pools"]
DRY = ["in pine forests", "in mountain caves", "on desert dunes", "in birch woods",
       "on sea cliffs", "in hay meadows", "on city rooftops"]  # fmt: skip
AQUATIC = {"heron", "otter", "toad", "eel"}
SINGULAR = {"shell", "crest", "tail", "frill", "fur", "skin", "throat", "beak", "breast", "cap",
            "stem", "belly", "snout"}  # fmt: skip
DIETS = ["feeds on fallen fruit", "eats small snails", "hunts at dusk", "drinks morning dew",
         "sleeps through the winter", "sings loudly before rain", "glows faintly at night",
         "migrates south in autumn"]  # fmt: skip

PURPOSES = {
    "measuring": ["rainfall", "snow depth", "river flow", "wind speed", "the weight of hay"],
    "sorting": ["wool", "apples", "coins", "beans", "letters"],
    "drying": ["grain", "fish", "tobacco", "wet laundry", "hops"],
    "lifting": ["water from deep wells", "stone blocks", "ship cargo", "barrels of ale"],
    "cooling": ["milk", "cellars", "forge water", "butter"],
    "counting": ["sheep at the gate", "votes", "passing carts", "bricks"],
    "grinding": ["salt", "pepper", "clay", "corn", "chalk"],
    "cleaning": ["chimneys", "wool fleeces", "ship hulls", "windows"],
    "warming": ["lamp oil", "bath water", "bread ovens", "greenhouses"],
    "spinning": ["flax", "silk", "rope"],
    "pressing": ["grapes", "olives", "cider apples", "flowers"],
    "cutting": ["timber", "ice blocks", "turf", "paper"],
}
DEVICES = ["pump", "engine", "press", "loom", "wheel", "scale", "drum", "crane", "sieve",
           "kiln"]  # fmt: skip
POWERS = ["a water wheel", "a hand crank", "wind sails", "a team of goats", "a coal furnace",
          "falling weights", "a foot pedal"]  # fmt: skip

INGREDIENTS = ["turnips", "smoked trout", "chestnuts", "barley", "goat cheese", "lentils",
               "plums", "mushrooms", "leeks", "duck eggs", "rye bread", "sweet onions",
               "pears", "mutton", "cabbage", "hazelnuts"]  # fmt: skip
METHODS = ["baked", "stewed", "fried", "steamed", "roasted", "pickled"]
DISH_KINDS = ["pie", "stew", "dumplings", "porridge", "tart", "soup", "pudding", "flatbread"]
OCCASIONS = ["at weddings", "on the longest night of winter", "to sailors returning home",
             "at harvest suppers", "to children on their birthdays", "during the spring fair"]  # fmt: skip

ACTIVITIES = ["floating paper lanterns down the river", "racing goats through the streets",
              "building towers of cheese", "ringing every bell at dawn",
              "carving faces into pumpkins", "throwing flour at neighbours",
              "dancing on stilts", "sailing toy boats on the lake", "burning a straw giant",
              "painting doors blue", "rolling barrels downhill", "releasing white doves",
              "tossing oranges into the sea", "weaving crowns of ivy", "lighting a thousand candles",
              "singing to the bees", "chasing a wheel of cheese", "climbing a greased pole",
              "feasting on roasted chestnuts", "wearing masks of straw", "swimming in icy water",
              "walking barefoot over hot coals", "flying kites from the hilltop",
              "counting the stars at midnight", "racing horses along the beach",
              "carrying torches through the forest", "planting a tree for every newborn",
              "hanging ribbons on an old oak", "juggling burning torches", "baking a giant loaf",
              "pulling a boat through the square", "blowing glass bubbles",
              "telling ghost stories by the well", "fishing by moonlight",
              "racing wheelbarrows", "stamping grapes in barrels", "marching with drums",
              "shearing sheep in the square", "building snow castles", "floating on rafts of reeds"]  # fmt: skip
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]  # fmt: skip

PROFESSIONS = ["cartographer", "glassblower", "astronomer", "botanist", "shipwright",
               "beekeeper", "clockmaker", "weaver", "stonemason", "physician"]  # fmt: skip
ACHIEVEMENTS = ["mapped the eastern marshes", "discovered a comet with a green tail",
                "built the tallest lighthouse on the coast", "wrote the first dictionary of bird songs",
                "bred a bee that makes red honey", "designed a clock that runs backwards",
                "sailed alone around the northern cape", "found a cure for marsh fever",
                "carved a staircase into a cliff", "catalogued every fern in the highlands",
                "invented a purple dye from beetles", "measured the depth of the great lake",
                "planted an orchard of ten thousand trees", "taught crows to carry letters",
                "restored the drowned chapel", "charted the currents of the salt coast",
                "recorded three hundred folk songs", "built a bridge of woven rope",
                "grew a pumpkin heavier than a horse", "founded the first school for girls",
                "crossed the red desert on a camel", "named forty new kinds of moth",
                "wove a tapestry longer than the town wall", "predicted the great flood",
                "dug the longest canal in the lowlands", "drew the first map of the night sky",
                "rescued a village from an avalanche", "made glass that does not break",
                "kept bees on a floating raft", "translated the old tablets",
                "built a ship without nails", "walked from the coast to the highlands",
                "tamed a wild white stag", "cast the great bell of the cathedral",
                "studied the songs of whales", "set a stone circle back upright",
                "brewed the first tea from pine needles", "invented a lamp that burns fish oil",
                "climbed the highest peak in winter", "saved the last herd of wild ponies"]  # fmt: skip


def unique_names(rng: random.Random, ends: list[str], count: int) -> list[str]:
    names = sorted({p + e for p in PREFIXES for e in ends})
    rng.shuffle(names)
    return names[:count]


def pick_combos(rng: random.Random, *lists: list[str], count: int) -> list[tuple[str, ...]]:
    """``count`` distinct combinations, one item from each list."""
    combos: set[tuple[str, ...]] = set()
    while len(combos) < count:
        combos.add(tuple(rng.choice(items) for items in lists))
    ordered = sorted(combos)
    rng.shuffle(ordered)
    return ordered


Doc = dict[str, str]
Query = Callable[[random.Random], str]


def towns(rng: random.Random) -> list[tuple[Doc, Query]]:
    names = unique_names(rng, TOWN_ENDS, 60)
    out = []
    for name, (material, obj) in zip(
        names, pick_combos(rng, MATERIALS, OBJECTS, count=60), strict=True
    ):
        region, river = rng.choice(REGIONS), rng.choice(RIVERS)
        size = rng.choice(["small", "busy", "quiet", "walled", "hillside", "harbour"])
        extra = rng.choice(TOWN_EXTRAS).format(
            day=rng.choice(DAYS),
            pop=rng.randrange(300, 9000, 50),
            year=rng.randrange(612, 1490),
            colour=rng.choice(COLOURS),
            river2=rng.choice(RIVERS),
        )
        text = (
            f"{name} is a {size} town {region} on the {river} river. "
            f"It is famous for its {material} {obj}, made by hand in family workshops."
        )
        if rng.random() < 0.7:
            text += " " + extra

        def query(r: random.Random, m: str = material, o: str = obj, rg: str = region) -> str:
            return r.choice([
                f"which town is famous for {m} {o}",
                f"where are {m} {o} made",
                f"town {rg} known for making {m} {o}",
            ])  # fmt: skip

        out.append(({"title": name, "text": text}, query))
    return out


def species(rng: random.Random) -> list[tuple[Doc, Query]]:
    names = unique_names(rng, NAME_ENDS, 60)
    out = []
    traits = sorted({(k, c, f) for k, fs in FEATURES.items() for f in fs for c in COLOURS})
    for name, (kind, colour, feature) in zip(names, rng.sample(traits, 60), strict=True):
        habitat = rng.choice(WET if kind in AQUATIC else DRY + WET)
        diet = rng.choice(DIETS)
        article = "a " if feature in SINGULAR and feature not in ("fur", "skin") else ""
        text = f"The {name} {kind} lives {habitat} and has {article}{colour} {feature}. It {diet}."
        if rng.random() < 0.5:
            text += (
                f" It was first described by {rng.choice(SURNAMES)} in {rng.randrange(1700, 1950)}."
            )

        def query(r: random.Random, k: str = kind, c: str = colour, f: str = feature,
                  h: str = habitat) -> str:  # fmt: skip
            return r.choice([
                f"which {k} has {c} {f}",
                f"{k} with {c} {f} found {h}",
                f"name of the {k} living {h} with {c} {f}",
            ])  # fmt: skip

        out.append(({"title": f"{name} {kind}", "text": text}, query))
    return out


def inventions(rng: random.Random) -> list[tuple[Doc, Query]]:
    out = []
    purposes = sorted((v, g) for v, goods in PURPOSES.items() for g in goods)
    combos = rng.sample(purposes, 50)
    for (verb, goods), surname in zip(
        combos, (rng.choice(SURNAMES) for _ in range(50)), strict=True
    ):
        device = rng.choice(DEVICES)
        first = rng.choice(PREFIXES) + rng.choice(NAME_ENDS)
        year, power = rng.randrange(1520, 1890), rng.choice(POWERS)
        title = f"{surname} {device}"
        text = (
            f"The {surname} {device} is a machine for {verb} {goods}, built by {first} {surname} "
            f"in {year}. It is driven by {power}."
        )

        def query(r: random.Random, v: str = verb, g: str = goods, who: str = surname) -> str:
            return r.choice([
                f"what machine was invented for {v} {g}",
                f"who built a device for {v} {g}",
                f"{who} invention used for {v} {g}",
            ])  # fmt: skip

        out.append(({"title": title, "text": text}, query))
    return out


def recipes(rng: random.Random, town_names: list[str]) -> list[tuple[Doc, Query]]:
    out = []
    combos = rng.sample(list(itertools.combinations(INGREDIENTS, 2)), 50)
    for first, second in combos:
        method, kind, occasion = rng.choice(METHODS), rng.choice(DISH_KINDS), rng.choice(OCCASIONS)
        town = rng.choice(town_names)
        title = f"{town} {kind}"
        text = (
            f"{town} {kind} is a {method} dish of {first} and {second}. "
            f"It is traditionally served {occasion}."
        )
        if rng.random() < 0.5:
            text += f" Some cooks add a pinch of {rng.choice(['pepper', 'mint', 'sage', 'honey'])}."

        def query(r: random.Random, a: str = first, b: str = second, m: str = method) -> str:
            return r.choice([
                f"{m} dish made with {a} and {b}",
                f"recipe that combines {b} with {a}",
                f"what dish uses {a} and {b}",
            ])  # fmt: skip

        out.append(({"title": title, "text": text}, query))
    return out


def festivals(rng: random.Random, town_names: list[str]) -> list[tuple[Doc, Query]]:
    names = unique_names(rng, ["mas", "tide", "fest", "day", "night"], 40)
    activities = ACTIVITIES[:]
    rng.shuffle(activities)
    out = []
    for name, activity in zip(names, activities, strict=True):
        town, month = rng.choice(town_names), rng.choice(MONTHS)
        text = (
            f"{name} is a festival held in {town} every {month}. People celebrate it by {activity}."
        )

        def query(r: random.Random, a: str = activity, m: str = month) -> str:
            return r.choice([
                f"which festival is celebrated by {a}",
                f"festival in {m} where people go {a}",
                f"where do people celebrate by {a}",
            ])  # fmt: skip

        out.append(({"title": name, "text": text}, query))
    return out


def people(rng: random.Random) -> list[tuple[Doc, Query]]:
    achievements = ACHIEVEMENTS[:]
    rng.shuffle(achievements)
    used: set[str] = set()
    out = []
    for achievement in achievements:
        while True:
            name = f"{rng.choice(PREFIXES)}{rng.choice(NAME_ENDS)} {rng.choice(SURNAMES)}"
            if name not in used:
                used.add(name)
                break
        profession, born = rng.choice(PROFESSIONS), rng.randrange(1600, 1900)
        text = f"{name} was a {profession} born in {born}. {name.split()[0]} {achievement}."

        def query(r: random.Random, a: str = achievement, p: str = profession) -> str:
            return r.choice([f"which {p} {a}", f"who {a}", f"the {p} who {a}"])

        out.append(({"title": name, "text": text}, query))
    return out


def build() -> tuple[list[Doc], list[tuple[str, str, str]]]:
    """Return documents (with ids) and (query id, text, doc id) triples."""
    rng = random.Random(SEED)
    town_items = towns(rng)
    town_names = [doc["title"] for doc, _ in town_items]
    items = (
        town_items
        + species(rng)
        + inventions(rng)
        + recipes(rng, town_names)
        + festivals(rng, town_names)
        + people(rng)
    )
    assert len(items) == 300, len(items)
    rng.shuffle(items)
    docs, queries = [], []
    for i, (doc, _) in enumerate(items, start=1):
        docs.append({"_id": f"d{i:03d}", "title": doc["title"], "text": doc["text"]})
    asked = sorted(rng.sample(range(300), 150))
    for n, i in enumerate(asked, start=1):
        queries.append((f"q{n:03d}", items[i][1](rng), docs[i]["_id"]))
    rng.shuffle(queries)
    return docs, queries


def main() -> None:
    docs, queries = build()
    (OUT / "qrels").mkdir(parents=True, exist_ok=True)
    with open(OUT / "corpus.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(doc, ensure_ascii=False) + "\n" for doc in docs)
    ordered = sorted(queries)
    with open(OUT / "queries.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps({"_id": q, "text": t}) + "\n" for q, t, _ in ordered)
    # The first 100 (in shuffled order) train, the other 50 test; each split sorted by id.
    for split, part in (("train", queries[:100]), ("test", queries[100:])):
        with open(OUT / "qrels" / f"{split}.tsv", "w", encoding="utf-8") as f:
            f.write("query-id\tcorpus-id\tscore\n")
            f.writelines(f"{q}\t{d}\t1\n" for q, _, d in sorted(part))
    print(f"wrote {len(docs)} documents and {len(queries)} queries to {OUT}")


if __name__ == "__main__":
    main()
