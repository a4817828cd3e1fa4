import numpy as np
import pytest

from conftest import shared
from llmrec.data import DataFormatError, SyntheticConfig, generate_world
from llmrec.data.locomo import DEV_CONVERSATIONS, load_locomo
from llmrec.data.movielens import load_movielens100k


def test_synthetic_world_is_seeded_and_has_signal():
    a, b = generate_world(SyntheticConfig(seed=3)), generate_world(SyntheticConfig(seed=3))
    assert np.array_equal(a.columns["label"], b.columns["label"])
    assert not np.array_equal(a.columns["label"], generate_world(SyntheticConfig(seed=4)).columns["label"])
    assert len(a) == 200 * 60 and 0.2 < a.columns["label"].mean() < 0.8
    assert set(a.columns["scenario"]) == {"home_feed", "search", "video"}
    info = a.item_info["0"]
    assert info["title"] and info["category"] in info["description"]
    # the theme (only in the text) drives clicks per user: user x theme click rates spread far more
    # than they do when the theme of each item is shuffled
    theme = {i: v["description"].split(":")[1].split(".")[0] for i, v in a.item_info.items()}
    assert len(set(theme.values())) == 6
    users, items, y = a.columns["user_id"], a.columns["item_id"], a.columns["label"]

    def spread(th):
        rates = {}
        for u, i, l in zip(users, items, y):
            rates.setdefault((u, th[i]), []).append(l)
        return np.mean([np.var([np.mean(v) for (uu, _), v in rates.items() if uu == u]) for u in set(users)])

    keys = list(theme)
    shuffled = dict(zip(keys, np.random.default_rng(0).permutation([theme[k] for k in keys])))
    assert spread(theme) > 1.5 * spread(shuffled)
    tr, va, te = a.chronological_split()
    assert len(tr) == 9600 and len(va) == 1200 and len(te) == 1200
    assert a.columns["timestamp"][tr].max() <= a.columns["timestamp"][te].min()


def test_group_tastes_make_regions_predict_clicks_and_leave_the_rest_alone():
    plain = generate_world(SyntheticConfig(n_users=600, impressions_per_user=30, seed=1))
    region = generate_world(SyntheticConfig(n_users=600, impressions_per_user=30, seed=1, group_taste=0.9))
    hidden = generate_world(SyntheticConfig(n_users=600, impressions_per_user=30, seed=1, group_taste=0.9,
                                            taste_groups=20))
    assert np.array_equal(generate_world(SyntheticConfig(n_users=600, impressions_per_user=30, seed=1,
                                                         group_taste=0.0)).columns["label"], plain.columns["label"])
    for w in (region, hidden):  # only the labels move
        for col in ("user_id", "item_id", "region", "category", "timestamp"):
            assert np.array_equal(w.columns[col], plain.columns[col])
        assert not np.array_equal(w.columns["label"], plain.columns["label"])

    def region_spread(w):  # how far (region, category) click rates spread around their category's rate
        reg, cat, y = w.columns["region"], w.columns["category"], w.columns["label"]
        out = []
        for c in set(cat):
            rates = [y[(cat == c) & (reg == r)].mean() for r in set(reg)]
            out.append(np.var(rates))
        return float(np.mean(out))

    assert region_spread(region) > 4 * region_spread(plain)
    assert region_spread(hidden) < 2 * region_spread(plain)  # hidden groups are not the regions


def test_split_fractions_validated():
    with pytest.raises(ValueError, match="fractions"):
        generate_world(SyntheticConfig(n_users=5, n_items=5)).chronological_split((0.5, 0.5, 0.5))


def test_movielens100k_loader():
    d = load_movielens100k(shared("ml-100k"))
    assert len(d) == 100_000
    assert abs(d.columns["label"].mean() - 0.55375) < 1e-6
    assert d.fields["genres"] == "multi_hot" and isinstance(d.columns["genres"][0], tuple)
    assert len(d.item_info) == 1682 and len(d.user_info) == 943


def test_movielens_malformed_file_names_file_line_field(tmp_path):
    (tmp_path / "ml-100k.inter").write_text(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t1\t5\t100\n1\t2\tfive\t101\n")
    (tmp_path / "ml-100k.user").write_text("user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n1\t20\tF\tx\t1\n")
    (tmp_path / "ml-100k.item").write_text("item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n1\tA\t1999\tDrama\n")
    with pytest.raises(DataFormatError, match=r"ml-100k.inter:3 field 'rating'"):
        load_movielens100k(tmp_path)
    (tmp_path / "ml-100k.inter").write_text("user_id:token\titem_id:token\trating:float\n")
    with pytest.raises(DataFormatError, match=r"ml-100k.inter:1 field 'timestamp'"):
        load_movielens100k(tmp_path)


def test_locomo_loader():
    convs = load_locomo(shared("locomo"))
    assert len(convs) == 10
    assert sum(len(c.sessions) for c in convs) == 272
    assert sum(len(s.turns) for c in convs for s in c.sessions) == 5882
    assert sum(len(c.qa) for c in convs) == 1986
    dev = load_locomo(shared("locomo"), DEV_CONVERSATIONS)
    assert [c.sample_id for c in dev] == list(DEV_CONVERSATIONS)
    q = dev[0].qa[0]
    assert q.gold_sessions == {1} and q.category == 2
    # malformed evidence ids are kept, not dropped
    assert sum(len(q.bad_evidence) for c in convs for q in c.qa) > 0


def test_locomo_malformed(tmp_path):
    p = tmp_path / "locomo10.json"
    p.write_text('[{"sample_id": "c", "qa": []}]')
    with pytest.raises(DataFormatError, match=r"\[0\].conversation"):
        load_locomo(p)
    p.write_text("[{")
    with pytest.raises(DataFormatError, match="locomo10.json:1"):
        load_locomo(p)


def test_random_row_split_is_seeded_disjoint_and_time_ordered():
    """``split_order: random`` (CTR parity over split seeds): the parts cover every row once, in the
    configured sizes, each part in time order; another seed gives another split; ``time`` is unchanged."""
    from llmrec.data.registry import DataConfig, load_data, split_rows

    cfg = DataConfig(source="synthetic")
    data = load_data(cfg)
    tr, va, te = split_rows(data, cfg.model_copy(update={"split_order": "random", "split_seed": 1}))
    assert sorted(np.concatenate([tr, va, te]).tolist()) == list(range(len(data)))
    assert (len(tr), len(va)) == (int(len(data) * 0.8), int(len(data) * 0.9) - int(len(data) * 0.8))
    ts = data.columns[data.time]
    assert all((np.diff(ts[part]) >= 0).all() for part in (tr, va, te))
    _, _, other = split_rows(data, cfg.model_copy(update={"split_order": "random", "split_seed": 2}))
    assert set(te.tolist()) != set(other.tolist())
    assert ts[te].min() < ts[tr].max()  # random: test rows are not all later than training rows
    chrono = split_rows(data, cfg)
    assert all(np.array_equal(a, b) for a, b in zip(chrono, data.chronological_split(cfg.split)))
