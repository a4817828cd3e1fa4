"""The embedded default data set: a seeded recommendation world with a known signal.

Users have latent tastes over item categories and over item *themes*. The theme of an item is not
a feature column: it appears only in the item's text (title and description). So a model that reads
the text (through LLM knowledge) can learn something ID and category features alone learn slowly,
especially for items with few impressions. Clicks also depend on price sensitivity, item quality
(a numerical feature) and the scenario (several scenarios with their own biases)."""
from __future__ import annotations

import numpy as np

from pydantic import Field

from llmrec.config import StrictConfig
from llmrec.data.schema import RecData

CATEGORIES = {
    "books": ["novel", "memoir", "cookbook", "anthology", "guide"],
    "movies": ["film", "documentary", "thriller", "comedy", "drama"],
    "music": ["album", "playlist", "vinyl", "concert recording", "EP"],
    "games": ["board game", "video game", "puzzle", "card game", "strategy game"],
    "kitchen": ["skillet", "kettle", "knife set", "blender", "teapot"],
    "outdoor": ["tent", "backpack", "hiking boots", "kayak", "lantern"],
    "fashion": ["jacket", "scarf", "sneakers", "dress", "hat"],
    "tech": ["headphones", "smartwatch", "tablet", "speaker", "keyboard"],
}
THEMES = {
    "cozy": (["Cozy", "Warm", "Snug", "Homely"], "soft, comforting and perfect for quiet evenings at home"),
    "adventurous": (["Wild", "Bold", "Trailblazer", "Summit"], "daring and energetic, made for exploring and taking risks"),
    "minimalist": (["Simple", "Clean", "Essential", "Pure"], "understated and functional with a clean, uncluttered design"),
    "luxurious": (["Royal", "Opulent", "Premium", "Velvet"], "lavish and refined, crafted from exquisite premium materials"),
    "playful": (["Funky", "Bubbly", "Zany", "Sunny"], "colourful and fun, full of humour and lighthearted surprises"),
    "scholarly": (["Classic", "Scholar's", "Thoughtful", "Deep"], "intellectual and detailed, rewarding careful study and reflection"),
}
SCENARIOS = ["home_feed", "search", "video"]
REGIONS = ["north", "south", "east", "west", "central"]


class SyntheticConfig(StrictConfig):
    """Size and seed of the synthetic recommendation world (users, items, impressions per user, scenarios)."""
    n_users: int = 200
    n_items: int = 300
    impressions_per_user: int = 60
    seed: int = 0
    theme_weight: float = 1.6
    category_weight: float = 1.0
    noise: float = 0.5
    # add post-click conversion columns "cart" and "purchase" (the multi-label view's funnel; see
    # ``funnel_labels``); drawn from their own random stream, so every other column is unchanged
    funnel: bool = False
    # a search log (``search_log``): this many queries per searching user, ``search_users`` of the users
    # search at all; 0: no log. Its own random stream: every other column is unchanged
    searches_per_user: int = Field(0, ge=0)
    search_users: float = Field(0.6, ge=0.0, le=1.0)
    # interest shift: each user's timeline is cut into this many spans, each with a current intent theme
    # that adds ``intent_weight`` to the click logit of items of that theme (and that the user's queries
    # mostly name); 0: no intents (the world is unchanged)
    intents: int = Field(0, ge=0)
    intent_weight: float = 1.5
    # shared tastes: this share of the variance of every user's category and theme preferences is their
    # group's; groups are the regions (``taste_groups`` 0: a user field, so attributes then predict clicks,
    # as DG-ENN's attribute graph assumes) or that many hidden groups (seen only through co-clicks, what its
    # collaborative graph's similarity edges find); group_taste 0: preferences are individual and user
    # attributes carry no signal (the world is unchanged)
    group_taste: float = Field(0.0, ge=0.0, le=1.0)
    taste_groups: int = Field(0, ge=0)


def generate_world(config: SyntheticConfig | None = None) -> RecData:
    """A seeded synthetic world with real signal: hidden user/item factors and text-only theme preferences decide
    the labels; items and users carry the text the LLM reads."""
    c = config or SyntheticConfig()
    rng = np.random.default_rng(c.seed)
    cats, themes = list(CATEGORIES), list(THEMES)
    n_cat, n_theme, n_sc = len(cats), len(themes), len(SCENARIOS)

    # items
    item_cat = rng.integers(0, n_cat, c.n_items)
    item_theme = rng.integers(0, n_theme, c.n_items)
    price = np.round(np.exp(rng.normal(3.2, 0.7, c.n_items)), 2)
    quality = np.clip(rng.normal(3.6, 0.8, c.n_items), 1, 5).round(1)
    item_info = {}
    for i in range(c.n_items):
        cat, th = cats[item_cat[i]], themes[item_theme[i]]
        adjs, blurb = THEMES[th]
        noun = CATEGORIES[cat][rng.integers(0, len(CATEGORIES[cat]))]
        title = f"{adjs[rng.integers(0, len(adjs))]} {noun.title()} No. {i}"
        desc = f"A {noun} in our {cat} range: {blurb}. Rated {quality[i]} of 5 by reviewers, priced at ${price[i]:.2f}."
        item_info[str(i)] = {"title": title, "category": cat, "description": desc}

    # users
    age = rng.integers(18, 71, c.n_users)
    gender = rng.choice(["F", "M"], c.n_users)
    region = rng.integers(0, len(REGIONS), c.n_users)
    cat_pref = rng.normal(0, 1, (c.n_users, n_cat))
    theme_pref = rng.normal(0, 1, (c.n_users, n_theme))
    price_sens = rng.gamma(2.0, 0.25, c.n_users)
    if c.group_taste > 0:  # its own stream: the draws above and below are unchanged
        g = np.random.default_rng([c.seed, 6])
        n_groups = c.taste_groups or len(REGIONS)
        group = g.integers(0, n_groups, c.n_users) if c.taste_groups else region
        keep, share = np.sqrt(1 - c.group_taste), np.sqrt(c.group_taste)
        cat_pref = keep * cat_pref + share * g.normal(0, 1, (n_groups, n_cat))[group]
        theme_pref = keep * theme_pref + share * g.normal(0, 1, (n_groups, n_theme))[group]
    user_info = {
        str(u): {"profile": f"{age[u]}-year-old {'woman' if gender[u] == 'F' else 'man'} from the {REGIONS[region[u]]} region"}
        for u in range(c.n_users)
    }

    # scenarios: own base rate and category boosts
    sc_bias = rng.normal(-0.3, 0.4, n_sc)
    sc_cat = rng.normal(0, 0.6, (n_sc, n_cat))

    n = c.n_users * c.impressions_per_user
    users = np.repeat(np.arange(c.n_users), c.impressions_per_user)
    items = rng.integers(0, c.n_items, n)
    scen = rng.integers(0, n_sc, n)
    ts = np.sort(rng.uniform(0, 1e6, n))[rng.permutation(n)]  # random interleaving of users over time
    logit = (
        c.category_weight * cat_pref[users, item_cat[items]]
        + c.theme_weight * theme_pref[users, item_theme[items]]
        + 0.5 * (quality[items] - 3.6)
        - price_sens[users] * (np.log(price[items]) - 3.2)
        + sc_bias[scen]
        + sc_cat[scen, item_cat[items]]
        + rng.normal(0, c.noise, n)
    )
    intent = current_intents(c, theme_pref) if c.intents else None
    if intent is not None:  # the same uniform draws below: only the intent term changes the labels
        logit = logit + c.intent_weight * (item_theme[items] == intent(users, ts))
    label = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    columns = {
        "user_id": users.astype(str).astype(object),
        "item_id": items.astype(str).astype(object),
        "scenario": np.array(SCENARIOS, dtype=object)[scen],
        "category": np.array(cats, dtype=object)[item_cat[items]],
        "age": age[users].astype(np.float32),
        "gender": gender[users].astype(object),
        "region": np.array(REGIONS, dtype=object)[region[users]],
        "price": price[items].astype(np.float32),
        "quality": quality[items].astype(np.float32),
        "label": label,
        "timestamp": ts.astype(np.float64),
    }
    if c.funnel:
        columns["click"] = label.copy()
        columns["cart"], columns["purchase"] = funnel_labels(
            c.seed, label, theme_pref[users, item_theme[items]], cat_pref[users, item_cat[items]],
            quality[items] - 3.6, price_sens[users] * (np.log(price[items]) - 3.2), users, item_cat[items])
    fields = {
        "user_id": "categorical", "item_id": "categorical", "scenario": "categorical",
        "category": "categorical", "gender": "categorical", "region": "categorical",
        "age": "numerical", "price": "numerical", "quality": "numerical",
    }
    searches = search_log(c, theme_pref, cat_pref, intent) if c.searches_per_user else {}
    return RecData(
        name=f"synthetic-world-s{c.seed}-{c.n_users}x{c.n_items}x{c.impressions_per_user}",
        columns=columns, fields=fields, scenario_col="scenario",
        domain="products (" + ", ".join(CATEGORIES) + ")",
        item_info=item_info, user_info=user_info, searches=searches,
    )


QUERY_EXTRAS = ["", "", "", "best", "cheap", "gift", "for home", "new", "top rated", "sale"]


def current_intents(c: SyntheticConfig, theme_pref: np.ndarray):
    """Interest shift: each user's [0, 1e6) timeline is cut at ``intents - 1`` uniform points; each span's
    intent theme is drawn by the user's taste (softmax of the preference) half of the time, uniformly
    otherwise (a new interest). Returns ``(users, times) -> intent theme index``. Stream ``(seed, 5)``."""
    rng = np.random.default_rng([c.seed, 5])
    n_users, n_theme = theme_pref.shape
    cuts = np.sort(rng.uniform(0, 1e6, (n_users, max(0, c.intents - 1))), axis=1)
    p = np.exp(theme_pref)
    p /= p.sum(1, keepdims=True)
    by_taste = np.array([[rng.choice(n_theme, p=p[u]) for _ in range(c.intents)] for u in range(n_users)])
    uniform = rng.integers(0, n_theme, (n_users, c.intents))
    theme = np.where(rng.random((n_users, c.intents)) < 0.5, by_taste, uniform)

    def at(users: np.ndarray, times: np.ndarray) -> np.ndarray:
        span = (times[:, None] > cuts[users]).sum(1)
        return theme[users, span]

    return at


def search_log(c: SyntheticConfig, theme_pref: np.ndarray, cat_pref: np.ndarray, intent=None
               ) -> dict[str, np.ndarray]:
    """The synthetic world's search log: a fraction ``search_users`` of the users issue ``searches_per_user``
    queries each, at uniform times over the impressions' span. A query carries the user's intent: its theme
    word (one of the theme's title adjectives or the theme's name, e.g. "snug" or "cozy") is drawn by the
    user's theme taste (softmax of 1.5 x preference) and its product noun by the category taste (softmax of
    the preference); one query in five explores (theme and category uniform). An extra word ("cheap",
    "gift", ...) is added at random. With ``intents`` (interest shift), 70% of the non-exploring queries
    name the user's current intent theme instead. The theme taste is otherwise visible only in item texts and
    the current intent nowhere, so queries tell a CTR model something about a user that ids learn slowly or
    not at all. Stream ``(seed, 4)``."""
    rng = np.random.default_rng([c.seed, 4])
    cats, themes = list(CATEGORIES), list(THEMES)
    searchers = np.flatnonzero(rng.random(c.n_users) < c.search_users)
    users, stamps, texts = [], [], []
    for u in searchers.tolist():
        pt = np.exp(1.5 * theme_pref[u])
        pc = np.exp(cat_pref[u])
        for _ in range(c.searches_per_user):
            when = rng.uniform(0, 1e6)
            explore = rng.random() < 0.2
            if intent is not None and not explore and rng.random() < 0.7:  # the current intent, mostly
                th = int(intent(np.array([u]), np.array([when]))[0])
            else:
                th = int(rng.integers(len(themes))) if explore else int(rng.choice(len(themes), p=pt / pt.sum()))
            ca = int(rng.integers(len(cats))) if explore else int(rng.choice(len(cats), p=pc / pc.sum()))
            words = [*THEMES[themes[th]][0], themes[th]]
            adj = words[int(rng.integers(len(words)))].lower().replace("'s", "")
            noun = CATEGORIES[cats[ca]][int(rng.integers(5))]
            extra = QUERY_EXTRAS[int(rng.integers(len(QUERY_EXTRAS)))]
            texts.append(" ".join(w for w in (extra, adj, noun) if w))
            users.append(str(u))
            stamps.append(when)
    return {"user_id": np.array(users, dtype=object), "timestamp": np.array(stamps, np.float64),
            "query": np.array(texts, dtype=object)}


def funnel_labels(seed: int, click: np.ndarray, theme: np.ndarray, category: np.ndarray, quality: np.ndarray,
                  price_cost: np.ndarray, users: np.ndarray, item_cat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Post-click conversions of the synthetic world: add-to-cart happens only after a click, purchase only
    after a cart. A click turns into a cart more often when the item's theme suits the user (the text-only
    taste), its quality is high and its price low for the user's price sensitivity, and at a rate of its
    category's own; a cart turns into a purchase on quality and price (weighted more than for the cart), the
    category's own purchase rate, the user's buying affinity for that category and a per-user buying
    propensity no feature shows. About 12-14% of impressions are carted and 5% bought (seeds 0 and 5),
    so purchase is the rare label. Drawn from the stream ``(seed, 1)``."""
    rng = np.random.default_rng([seed, 1])
    n = len(click)
    n_users, n_cat = (int(users.max()) + 1, int(item_cat.max()) + 1) if n else (0, 0)
    buyer = rng.normal(0, 1, n_users)[users]
    cat_cart, cat_buy = rng.normal(0, 0.6, n_cat)[item_cat], rng.normal(0, 0.8, n_cat)[item_cat]
    affinity = rng.normal(0, 0.8, (n_users, n_cat))[users, item_cat]
    cart_logit = (-1.9 + 0.9 * theme + 0.3 * category + 0.6 * quality - 1.5 * price_cost + cat_cart
                  + rng.normal(0, 0.5, n))
    buy_logit = (-1.6 + 1.2 * quality - 2.0 * price_cost + 0.6 * buyer + cat_buy + affinity + 0.3 * theme
                 + rng.normal(0, 0.5, n))
    cart = click * (rng.random(n) < 1 / (1 + np.exp(-cart_logit)))
    purchase = cart * (rng.random(n) < 1 / (1 + np.exp(-buy_logit)))
    return cart.astype(np.float32), purchase.astype(np.float32)


class SequenceWorldConfig(StrictConfig):
    """Size, seed and signal of the synthetic sequence world."""
    n_users: int = 300
    n_items: int = 300
    min_length: int = 8
    max_length: int = 40
    successors: int = 3  # each item's fixed next-item candidates
    follow: float = 0.7  # probability that the next item is a successor of the current one
    seed: int = 0


def generate_sequences(config: SequenceWorldConfig | None = None) -> RecData:
    """A seeded world of interaction sequences with two known signals: a transition structure (each item has
    ``successors`` fixed follow-up items; with probability ``follow`` a user's next item is one of them, the one
    closest to the user's theme taste first) and a text-only taste (otherwise the next item is drawn by the
    user's theme preference, and an item's theme appears only in its title and description, as in
    ``generate_world``). Every row is an interaction (label 1), time-ordered per user. Users' lengths are
    uniform in [min_length, max_length], so short-history users exist (DiffuASR's target)."""
    c = config or SequenceWorldConfig()
    if not 0 <= c.follow <= 1:
        raise ValueError(f"follow: must be in [0, 1], got {c.follow}")
    if c.min_length < 3 or c.max_length < c.min_length:
        raise ValueError(f"min_length / max_length: need 3 <= min_length <= max_length, got {c.min_length} / "
                         f"{c.max_length}")
    rng = np.random.default_rng(c.seed)
    cats, themes = list(CATEGORIES), list(THEMES)
    item_cat = rng.integers(0, len(cats), c.n_items)
    item_theme = rng.integers(0, len(themes), c.n_items)
    succ = np.stack([rng.choice(c.n_items, c.successors, replace=False) for _ in range(c.n_items)])
    taste = rng.normal(0, 1.5, (c.n_users, len(themes)))
    item_info = {}
    for i in range(c.n_items):
        adjs, blurb = THEMES[themes[item_theme[i]]]
        noun = CATEGORIES[cats[item_cat[i]]][rng.integers(0, 5)]
        item_info[str(i)] = {"title": f"{adjs[rng.integers(0, len(adjs))]} {noun.title()} No. {i}",
                             "category": cats[item_cat[i]], "description": f"A {noun} in our {cats[item_cat[i]]} range: {blurb}."}
    users, items, stamps = [], [], []
    for u in range(c.n_users):
        p = np.exp(taste[u, item_theme])
        p /= p.sum()
        length = int(rng.integers(c.min_length, c.max_length + 1))
        cur = int(rng.choice(c.n_items, p=p))
        seq = [cur]
        while len(seq) < length:
            if rng.random() < c.follow:
                options = succ[cur]
                w = np.exp(taste[u, item_theme[options]])
                cur = int(rng.choice(options, p=w / w.sum()))
            else:
                cur = int(rng.choice(c.n_items, p=p))
            seq.append(cur)
        start = rng.uniform(0, 1e6)
        users += [u] * length
        items += seq
        stamps += list(start + np.arange(length) * 60.0)
    n = len(users)
    columns = {"user_id": np.array(users).astype(str).astype(object),
               "item_id": np.array(items).astype(str).astype(object),
               "category": np.array(cats, dtype=object)[item_cat[np.array(items)]],
               "label": np.ones(n, np.float32), "timestamp": np.array(stamps, np.float64)}
    return RecData(name=f"synthetic-sequences-s{c.seed}-{c.n_users}x{c.n_items}", columns=columns,
                   fields={"user_id": "categorical", "item_id": "categorical", "category": "categorical"},
                   domain="products (" + ", ".join(CATEGORIES) + ")", item_info=item_info,
                   user_info={str(u): {"profile": f"shopper {u}"} for u in range(c.n_users)})
