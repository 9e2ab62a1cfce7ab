"""ForgetData from MLLMU files and photo folders: split names, picking subjects, clear errors."""
import json
import warnings
from pathlib import Path

import pytest

from conftest import random_image
from core.data.folder import add_name_questions
from core.data.mllmu import export_records
from core.data.records import PersonRecord
from core.data.source import ForgetData, load_data, parse_specs


def _rec(i, name):
    r = PersonRecord(f"s{i}", images=[random_image(i)], name=name)
    add_name_questions(r)
    return r


@pytest.fixture()
def files(tmp_path):
    export_records([_rec(0, "Mara Quill"), _rec(1, "Oskar Draper")], tmp_path / "forget_10.parquet")
    export_records([_rec(2, "Sam Rivers"), _rec(3, "Alex Morgan")], tmp_path / "retain_90.parquet")
    export_records([_rec(0, "Mara Quill")], tmp_path / "test_10.parquet", test=True)
    export_records([_rec(9, "Jordan Lee")], tmp_path / "real.parquet")
    return tmp_path


def test_split_specs_and_a_folder_of_files(files):
    assert parse_specs(["forget=a.parquet", "retain=b.parquet"]) == {"forget": "a.parquet", "retain": "b.parquet"}
    found = parse_specs([str(files)])
    assert {k: v.split("/")[-1] for k, v in found.items()} == {
        "forget": "forget_10.parquet", "retain": "retain_90.parquet", "test": "test_10.parquet", "real": "real.parquet"}
    data = load_data([str(files)])
    assert data.forget_ids == ["s0", "s1"] and [r.id for r in data.retain] == ["s2", "s3"]
    assert list(data.splits()) == ["forget", "test", "retain", "real"] and data.splits(1)["retain"][0].id == "s2"
    assert data.names == ["Mara Quill", "Oskar Draper", "Sam Rivers", "Alex Morgan"]
    with pytest.raises(ValueError, match="SPLIT=PATH"):
        parse_specs(["nonsense"])
    for typo in (["retian=b.parquet"], {"forget": "a.parquet", "validation": "v.parquet"}):
        with pytest.raises(ValueError, match=r"unknown split name\(s\) '(retian|validation)'.*forget, retain, test, real"):
            parse_specs(typo)  # was read and then never used: a fit without the retained people it was given


def test_pick_forgets_chosen_subjects_and_retains_the_rest(files):
    data = load_data([str(files)]).pick(["s1", "s2"])
    assert data.forget_ids == ["s1", "s2"] and [r.id for r in data.retain] == ["s0", "s3"]
    assert data.test == []  # the test split held only s0
    with pytest.raises(ValueError, match="unknown subject id"):
        load_data([str(files)]).pick(["nobody"])
    assert data.splits(1) and all(len(v) == 1 for v in data.splits(1).values())
    for bad in (0, -1):  # [:-1] would have dropped each split's last row
        with pytest.raises(ValueError, match="limit must be at least 1"):
            data.splits(bad)


def test_photo_folder_forget_set_with_mllmu_retain(files, tmp_path):
    d = tmp_path / "photos" / "kim"
    d.mkdir(parents=True)
    random_image(3).save(d / "1.png")
    (d / "facts.json").write_text(json.dumps({"name": "Kim Lo"}))
    data = load_data([f"retain={files / 'retain_90.parquet'}"], forget_dir=tmp_path / "photos")
    assert data.forget_ids == ["kim"] and data.forget[0].name == "Kim Lo" and len(data.retain) == 2
    with pytest.raises(ValueError, match="not both"):
        load_data([str(files)], forget_dir=tmp_path / "photos")


def test_missing_or_conflicting_data_is_refused(files):
    with pytest.raises(ValueError, match="no forget set"):
        load_data([f"retain={files / 'retain_90.parquet'}"])
    with pytest.raises(FileNotFoundError):
        load_data(["forget=/nowhere/forget.parquet"])
    with pytest.raises(ValueError, match="forget set is empty"):
        ForgetData([])
    r = _rec(0, "Mara Quill")
    with pytest.raises(ValueError, match="both the forget and the retain"):
        ForgetData([r], [r])


def test_made_up_names_top_up_the_named_retained_subjects_and_never_touch_a_subject():
    from core.data.source import NAMED_RETAIN
    forget = [PersonRecord("f", name="Maria Silva")]  # its words are built-in decoy words: they must not be used
    kept = [PersonRecord(f"k{i}", name=n) for i, n in enumerate(("Oskar Draper", "Lena Holm"))]
    data = ForgetData(forget, kept)
    names = data.decoy_names()
    assert len(names) == NAMED_RETAIN - 2 and len(set(names)) == len(names) and names == data.decoy_names()
    assert names != data.decoy_names(seed=1)
    words = {w for n in names for w in n.split()}
    assert not words & {"Maria", "Silva"} and not set(names) & {"Oskar Draper", "Lena Holm", "Maria Silva"}
    assert {"Oskar", "Holm"} <= words  # the kept people's name words join the built-in ones
    many = ForgetData(forget, [PersonRecord(f"r{i}", name=f"Person{i} X") for i in range(NAMED_RETAIN)])
    assert many.decoy_names() == []  # enough real people retained: nothing made up


def test_a_word_level_tokenizer_keeps_only_the_made_up_names_it_can_spell():
    from core.models.tiny import plain_english_words, tiny_tokenizer
    tok = tiny_tokenizer("llava", plain_english_words(("Sam", "Rivers", "Oskar", "Draper", "Smith")))
    data = ForgetData([PersonRecord("f", name="Sam Rivers")], [PersonRecord("k", name="Oskar Draper")])
    names = data.for_tokenizer(tok).decoy_names()
    assert set(names) == {"Oskar Smith"}  # Oskar x {Smith, Draper}, less the real Oskar Draper; Sam, Rivers are taken


@pytest.mark.parametrize("retained", [PersonRecord("S0", name="Someone Else"), PersonRecord("p9", name=" mara  QUILL")])
def test_a_forgotten_person_in_the_retain_set_under_another_id_is_refused(retained):
    """Their questions would be target-1 and target-0 rows of one gate at once: a photo folder named
    after the person next to MLLMU retain files holding them, or an id in another case."""
    with pytest.raises(ValueError, match="retain set holds people of the forget set under other ids .*remove them from the retain files or folder$"):
        ForgetData([_rec(0, "Mara Quill")], [_rec(1, "Oskar Draper"), retained])


def test_a_forgotten_name_written_with_hyphens_or_underscores_is_the_same_person():
    """A folder jean-luc_picard reads as "Jean-Luc Picard", the app's photo naming reads
    jean-luc_picard.jpg as "Jean Luc Picard": the same person on both sides of the gate was not
    caught."""
    from core.data.folder import names_of_photos
    from core.data.records import name_key
    assert name_key("Jean-Luc Picard") == name_key("jean luc  picard") == name_key("Jean_Luc_Picard")
    assert name_key("Jean-Luc Picard") != name_key("Jean Picard")
    (app_name,) = names_of_photos(["jean-luc_picard.jpg"])
    with pytest.raises(ValueError, match=r"under other ids \(keep = s0, by name"):
        ForgetData([_rec(0, "Jean-Luc Picard")], [PersonRecord("keep", images=[random_image(5)], name=app_name)])


def test_picking_a_subject_twice_forgets_it_once(files):
    data = load_data([str(files)]).pick(["s2", "s2", "s0"])
    assert data.forget_ids == ["s2", "s0"] and [r.id for r in data.retain] == ["s1", "s3"]


def test_a_split_named_twice_a_foreign_test_split_or_a_test_file_beside_photos_is_refused(files, tmp_path):
    """Each was used silently: the second file of a split replaced the first, a test file of
    retained people was scored as the forget people's held-out questions, and a test file given
    with --forget-dir was dropped."""
    with pytest.raises(ValueError, match="names the split 'retain' twice"):
        parse_specs([f"retain={files / 'retain_90.parquet'}", f"retain={files / 'real.parquet'}"])
    with pytest.raises(ValueError, match=r"test split holds none of the forget set's people \(it has s2, s3"):
        load_data([f"forget={files / 'forget_10.parquet'}", f"test={files / 'retain_90.parquet'}"])
    # MLLMU-Bench's test file is shared by its forget splits: only this forget set's people are kept
    export_records([_rec(0, "Mara Quill"), _rec(2, "Sam Rivers")], files / "test_shared.parquet", test=True)
    data = load_data([f"forget={files / 'forget_10.parquet'}", f"test={files / 'test_shared.parquet'}"])
    assert [r.id for r in data.test] == ["s0"]
    d = tmp_path / "photos" / "kim"
    d.mkdir(parents=True)
    random_image(3).save(d / "1.png")
    with pytest.raises(ValueError, match="with --forget-dir, drop it"):
        load_data([f"test={files / 'test_10.parquet'}"], forget_dir=tmp_path / "photos")


def test_a_split_given_as_the_folder_of_every_split_reads_only_its_own_files(files):
    """--data forget=DIR on a folder that `world --export` wrote read every split as the forget set."""
    data = load_data([f"forget={files}", f"retain={files}"])
    assert data.forget_ids == ["s0", "s1"] and [r.id for r in data.retain] == ["s2", "s3"]


def test_a_split_file_and_a_folder_holding_that_split_are_refused_in_either_order(files, tmp_path):
    """The folder's file replaced a file named before it without a word (the other order was refused)."""
    mine = f"retain={files / 'real.parquet'}"
    for specs in ([mine, str(files)], [str(files), mine]):
        with pytest.raises(ValueError, match="names the split.*'retain'.*twice"):
            parse_specs(specs)


def test_real_rows_are_tagged_apart_from_retained_people_whose_ids_they_share(tmp_path):
    """Each MLLMU file numbers its own rows: a real row with a retained person's ID was grouped
    with the people by the tuner and would move with them on a forget / withdraw request."""
    from core.contrast import GENERAL_TAG, gate_sets, retain_groups
    export_records([_rec(0, "Mara Quill")], tmp_path / "forget_10.parquet")
    kept = _rec(1, "Sam Rivers")
    export_records([kept], tmp_path / "retain_90.parquet")
    real = _rec(7, "Jordan Lee")
    real.id = kept.id  # the same ID in another file
    export_records([real], tmp_path / "real.parquet")
    data = load_data([str(tmp_path)])
    _, retain = gate_sets(data)
    general = [p for p in retain if p.tag.startswith(GENERAL_TAG)]
    assert general and {p.tag for p in general} == {f"{GENERAL_TAG}{kept.id}"}
    assert set(p.tag for p in retain if p.tag == kept.id)  # the person's own rows keep the bare id
    groups = dict(zip(map(id, retain), retain_groups(data, retain)))
    assert {groups[id(p)] for p in general} == {"general"}
    assert {groups[id(p)] for p in retain if p.tag == kept.id} <= {"people, image", "people, by name"}



def test_parquet_files_a_folder_holds_under_other_names_are_named_not_dropped_silently(files):
    """retain.parquet or Test_10.parquet in a folder of splits were read as nothing, without a word."""
    (files / "retain_90.parquet").rename(files / "retain.parquet")
    with pytest.warns(UserWarning, match=r"retain.parquet match none of .*name them with --data SPLIT=PATH"):
        found = parse_specs([str(files)])
    assert "retain" not in found and set(found) == {"forget", "test", "real"}


def test_a_subject_picked_from_the_retain_file_keeps_their_rows_of_a_shared_test_file(files):
    """The test split was cut to the forget file's people before a pick: a person picked from the
    retain file lost their new pictures (MLLMU-Bench's test file is shared by every forget split)."""
    export_records([_rec(0, "Mara Quill"), _rec(2, "Sam Rivers")], files / "test_10.parquet", test=True)
    data = load_data([str(files)])
    assert [r.id for r in data.test] == ["s0"]  # only the forget file's people are scored as its test split
    picked = data.pick(["s0", "s2"])
    assert [r.id for r in picked.test] == ["s0", "s2"] and [r.id for r in picked.pick(["s2"]).test] == ["s2"]


def _download(files, root, *forgets, retain="retain_90"):
    """`files` (an export) laid out as MLLMU-Bench's download: a folder per split holding
    train-00000-of-00001.parquet, the test split in Test_Set, the real celebrities in Retain_Set,
    no `name` column (Full_Set comes with the download and is not a split)."""
    import pyarrow.parquet as pq
    layout = {**{f: "forget_10.parquet" for f in forgets}, retain: "retain_90.parquet", "Test_Set": "test_10.parquet",
              "Retain_Set": "real.parquet", "Full_Set": "retain_90.parquet"}
    for folder, source in layout.items():
        (root / folder).mkdir(parents=True)
        pq.write_table(pq.read_table(files / source).drop_columns(["name"]), root / folder / "train-00000-of-00001.parquet")
    return root


def test_the_mllmu_bench_download_folder_is_read_as_its_splits_and_unnamed_people_are_named_as_such(files, tmp_path):
    """The download names every shard train-00000-of-00001.parquet inside a folder per split, so
    `--data DIR` on it was refused as holding no split; its files have no `name` column, and the
    project's questions by name were then left out without a word."""
    root = _download(files, tmp_path / "MLLMU-Bench", "forget_10")
    found = parse_specs([str(root)])
    assert {k: Path(v).name for k, v in found.items()} == {"forget": "forget_10", "retain": "retain_90",
                                                           "test": "Test_Set", "real": "Retain_Set"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # names missing are said by the fit (core.contrast), after any pick
        data = load_data([str(root)])
    assert data.forget_ids == ["s0", "s1"] and [r.id for r in data.retain] == ["s2", "s3"]
    assert [r.id for r in data.test] == ["s0"] and [r.id for r in data.real] == ["s9"] and data.names == []
    assert len(data.test[0].images) == 1 and data.forget[0].classification_image and data.forget[0].mask


def test_a_download_with_several_forget_splits_names_the_choice_and_a_missing_retain_pair_is_said(files, tmp_path):
    root = _download(files, tmp_path / "all", "forget_5", "forget_10")
    with pytest.raises(ValueError, match=r"MLLMU-Bench download with 2 forget splits \(forget_5, forget_10\): choose "
                                         r"one, e.g. --data forget=\S+/forget_10 --data retain=\S+/retain_90 --data "
                                         r"test=\S+/Test_Set --data real=\S+/Retain_Set"):
        parse_specs([str(root)])
    # the example is a complete command: the forget split whose retain set is there
    five = _download(files, tmp_path / "five", "forget_5", "forget_10", retain="retain_95")
    with pytest.raises(ValueError, match=r"e.g. --data forget=\S+/forget_5 --data retain=\S+/retain_95 --data test="):
        parse_specs([str(five)])
    other = _download(files, tmp_path / "other", "forget_10", retain="retain_95")  # retain_95 holds forget_10's people
    with pytest.warns(UserWarning, match="forget_10 has no retain_90 folder beside it: no retain split is read; give "
                                         "one with --data retain=PATH"):
        assert set(parse_specs([str(other)])) == {"forget", "test", "real"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the advice followed: no warning
        given = parse_specs([str(other), f"retain={files / 'retain_90.parquet'}"])
    assert given["retain"].endswith("retain_90.parquet") and given["forget"].endswith("forget_10")
    (tmp_path / "empty" / "notes").mkdir(parents=True)
    with pytest.raises(ValueError, match="holds none of .*nor the MLLMU-Bench download's forget_N folders"):
        parse_specs([str(tmp_path / "empty")])
    # an exported real.parquet beside the download's folders: both read, not the file alone
    (root / "forget_5").rename(tmp_path / "forget_5_aside")
    (root / "Retain_Set").rename(tmp_path / "Retain_Set_aside")
    (files / "real.parquet").rename(root / "real.parquet")
    assert {k: Path(v).name for k, v in parse_specs([str(root)]).items()} == {
        "forget": "forget_10", "retain": "retain_90", "test": "Test_Set", "real": "real.parquet"}


def test_a_folder_whose_path_holds_an_equals_sign_is_read_as_a_folder(files, tmp_path):
    """`--data runs/lr=1e-4` was split at the "=" and refused as an unknown split 'runs/lr'."""
    import shutil
    odd = tmp_path / "lr=1e-4"
    odd.mkdir()
    for f in files.glob("*.parquet"):
        shutil.copy(f, odd / f.name)
    assert {k: Path(v).name for k, v in parse_specs([str(odd)]).items()} == {
        "forget": "forget_10.parquet", "retain": "retain_90.parquet", "test": "test_10.parquet", "real": "real.parquet"}
    assert parse_specs([f"forget={odd}/forget_10.parquet"]) == {"forget": f"{odd}/forget_10.parquet"}
