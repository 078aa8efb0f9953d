//! Text datasets on small fixtures in every format: contents, splits, vocabulary, and one
//! clear error (file and line) for each kind of malformed input.

use std::fs::File;
use std::path::{Path, PathBuf};

use gtap_data::{
    load_text, read_corpus, text_files, Corpus, DataError, FetchPolicy, Holdout, Location,
    Normalisation, Split, TextConfig, TextData, TextDataset, TextEncoding, TextFiles, TextFormat,
};
use polars::prelude::*;

use crate::fixtures::{assert_mentions, dead_url, write};

const TWEETS: TextDataset = TextDataset::TweetsTopic;
const EMOTION: TextDataset = TextDataset::Emotion;

/// Fixture tweet `i`: words shared by topic, a per-example word, label `i % 20`.
fn tweet(i: usize) -> (String, i64) {
    (
        format!("Topic{} news, \"item\" {i}; https://t.co/x{i}", i % 20),
        (i % 20) as i64,
    )
}

/// Fixture emotion line `i`: a text with a `;` inside it, label name `i % 6`.
fn emotion_line(i: usize) -> (String, &'static str) {
    (
        format!(
            "i feel {} today; really {i}",
            ["down", "great", "loved", "mad", "scared", "amazed"][i % 6]
        ),
        gtap_data::EMOTION_LABELS[i % 6],
    )
}

/// A CSV file with header `text,label` and these rows (texts quoted as CSV requires).
fn csv_bytes(rows: &[(String, i64)]) -> Vec<u8> {
    let mut out = String::from("text,label\n");
    for (text, label) in rows {
        out.push_str(&format!("\"{}\",{label}\n", text.replace('"', "\"\"")));
    }
    out.into_bytes()
}

fn lines_bytes(rows: &[(String, &str)]) -> Vec<u8> {
    rows.iter()
        .map(|(t, l)| format!("{t};{l}\n"))
        .collect::<String>()
        .into_bytes()
}

fn write_parquet(path: &Path, texts: Vec<Option<String>>, labels: Vec<Option<i64>>) {
    let mut df = df!("text" => texts, "label" => labels).unwrap();
    ParquetWriter::new(File::create(path).unwrap())
        .finish(&mut df)
        .unwrap();
}

fn tweets(n: usize) -> Vec<(String, i64)> {
    (0..n).map(tweet).collect()
}

fn emotions(n: usize) -> Vec<(String, &'static str)> {
    (0..n).map(emotion_line).collect()
}

/// The tweets' CSV layout in `dir`: `n_train` and `n_test` fixture tweets.
fn tweets_csv(dir: &Path, n_train: usize, n_test: usize) -> TextFiles {
    TextFiles {
        dataset: TWEETS,
        format: TextFormat::Csv,
        train: write(dir, "topic_train.csv", &csv_bytes(&tweets(n_train))),
        probe: None,
        test: write(dir, "topic_valid.csv", &csv_bytes(&tweets(n_test))),
    }
}

fn tweets_parquet(dir: &Path, n_train: usize, n_test: usize) -> TextFiles {
    let put = |name: &str, n: usize| {
        let path = dir.join(name);
        let rows = tweets(n);
        write_parquet(
            &path,
            rows.iter().map(|r| Some(r.0.clone())).collect(),
            rows.iter().map(|r| Some(r.1)).collect(),
        );
        path
    };
    TextFiles {
        dataset: TWEETS,
        format: TextFormat::Parquet,
        train: put("train.parquet", n_train),
        probe: None,
        test: put("validation.parquet", n_test),
    }
}

fn emotion_txt(dir: &Path, n: [usize; 3]) -> TextFiles {
    TextFiles {
        dataset: EMOTION,
        format: TextFormat::Lines,
        train: write(dir, "train.txt", &lines_bytes(&emotions(n[0]))),
        probe: Some(write(dir, "val.txt", &lines_bytes(&emotions(n[1])))),
        test: write(dir, "test.txt", &lines_bytes(&emotions(n[2]))),
    }
}

fn emotion_parquet(dir: &Path, n: [usize; 3]) -> TextFiles {
    let put = |name: &str, n: usize| {
        let path = dir.join(name);
        let rows = emotions(n);
        write_parquet(
            &path,
            rows.iter().map(|r| Some(r.0.clone())).collect(),
            (0..n).map(|i| Some((i % 6) as i64)).collect(),
        );
        path
    };
    TextFiles {
        dataset: EMOTION,
        format: TextFormat::Parquet,
        train: put("train.parquet", n[0]),
        probe: Some(put("validation.parquet", n[1])),
        test: put("test.parquet", n[2]),
    }
}

fn tweets_cfg(size: usize, seed: u64, vocab_size: usize) -> TextConfig {
    TextConfig {
        vocab_size,
        encoding: TextEncoding::BagOfWords,
        holdout: Some(Holdout { size, seed }),
    }
}

/// Every row of `split` is the encoding of the source text at its index, with its label.
fn check_rows(split: &Split, data: &TextData, source: &Corpus) {
    let v = data.vocabulary.len();
    assert_eq!(split.image_len(), v);
    assert_eq!(split.normalisation(), Normalisation::Identity);
    let mut distinct = split.indices().to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), split.len(), "an example appears twice");
    for (k, &i) in split.indices().iter().enumerate() {
        let i = i as usize;
        assert_eq!(split.labels()[k], source.labels[i]);
        let row = &split.pixels()[k * v..(k + 1) * v];
        assert_eq!(row, &data.vocabulary.encode(&source.texts[i])[..]);
        assert!(split.image(k).iter().all(|&x| x == 0.0 || x == 1.0));
    }
}

#[test]
fn defaults_per_dataset() {
    assert_eq!(TextConfig::for_dataset(TWEETS), tweets_cfg(2000, 0, 5000));
    assert_eq!(
        TextConfig::for_dataset(EMOTION),
        TextConfig {
            vocab_size: 5000,
            encoding: TextEncoding::BagOfWords,
            holdout: None
        }
    );
    assert_eq!((TWEETS.num_classes(), EMOTION.num_classes()), (20, 6));
    assert_eq!((TWEETS.name(), EMOTION.name()), ("tweets-topic", "emotion"));
}

#[test]
fn csv_rows_parse_with_quotes_commas_and_semicolons() {
    let dir = tempfile::tempdir().unwrap();
    let files = tweets_csv(dir.path(), 5, 1);
    let corpus = read_corpus(TWEETS, TextFormat::Csv, &files.train).unwrap();
    let expected = tweets(5);
    assert_eq!(
        corpus.texts,
        expected.iter().map(|r| r.0.clone()).collect::<Vec<_>>()
    );
    assert_eq!(corpus.labels, [0, 1, 2, 3, 4]);
    assert!(corpus.texts[3].contains("\"item\""));
}

#[test]
fn emotion_lines_split_at_the_last_semicolon() {
    let dir = tempfile::tempdir().unwrap();
    // CRLF line ends and a missing final newline are fine too.
    let path = write(
        dir.path(),
        "train.txt",
        b"a; b;c;joy\r\nno separator here;surprise\r\nlast;fear",
    );
    let corpus = read_corpus(EMOTION, TextFormat::Lines, &path).unwrap();
    assert_eq!(corpus.texts, ["a; b;c", "no separator here", "last"]);
    assert_eq!(corpus.labels, [1, 5, 4]);
}

#[test]
fn tweets_split_into_train_probe_and_test() {
    let dir = tempfile::tempdir().unwrap();
    let files = tweets_csv(dir.path(), 60, 9);
    let data = load_text(&files, &tweets_cfg(15, 7, 1000)).unwrap();
    assert_eq!(
        (data.train.len(), data.probe.len(), data.test.len()),
        (45, 15, 9)
    );
    assert_eq!(data.num_classes(), 20);
    // Train and probe partition the training file.
    let mut all: Vec<u32> = data.train.indices().to_vec();
    all.extend(data.probe.indices());
    all.sort_unstable();
    assert_eq!(all, (0..60).collect::<Vec<u32>>());
    let source = read_corpus(TWEETS, TextFormat::Csv, &files.train).unwrap();
    check_rows(&data.train, &data, &source);
    check_rows(&data.probe, &data, &source);
    check_rows(
        &data.test,
        &data,
        &read_corpus(TWEETS, TextFormat::Csv, &files.test).unwrap(),
    );
    // The vocabulary sees train only: a probe example's own number is not in it.
    let probe_only = data.probe.indices()[0];
    assert_eq!(data.vocabulary.index_of(&format!("x{probe_only}")), None);
    let train_one = data.train.indices()[0];
    assert!(data.vocabulary.index_of(&format!("x{train_one}")).is_some());
    assert_eq!(data.vocabulary.words()[..2], ["co", "https"]);
}

#[test]
fn holdout_depends_on_the_seed_only() {
    let dir = tempfile::tempdir().unwrap();
    let files = tweets_csv(dir.path(), 50, 5);
    let a = load_text(&files, &tweets_cfg(10, 1, 100)).unwrap();
    let b = load_text(&files, &tweets_cfg(10, 1, 100)).unwrap();
    let c = load_text(&files, &tweets_cfg(10, 2, 100)).unwrap();
    assert_eq!(a, b);
    assert_ne!(a.probe.indices(), c.probe.indices());
    // In the permutation's order, not sorted: the real file is sorted by label, and ν reads
    // the first N probe examples, which must be a uniform sample.
    let perm = gtap_data::seeded_permutation(50, 1);
    let expected: Vec<u32> = perm[..10].iter().map(|&k| k as u32).collect();
    assert_eq!(a.probe.indices(), expected);
    assert!(
        a.probe.indices().windows(2).any(|w| w[0] > w[1]),
        "probe came out sorted"
    );
}

#[test]
fn vocab_size_caps_the_features() {
    let dir = tempfile::tempdir().unwrap();
    let files = tweets_csv(dir.path(), 30, 3);
    let data = load_text(&files, &tweets_cfg(5, 0, 7)).unwrap();
    assert_eq!(data.vocabulary.len(), 7);
    assert_eq!(data.train.image_len(), 7);
    assert_eq!(data.test.pixels().len(), 3 * 7);
}

#[test]
fn token_encoding_gives_each_text_its_word_ids_with_the_same_splits() {
    let dir = tempfile::tempdir().unwrap();
    let files = emotion_txt(dir.path(), [30, 8, 6]);
    let bags = load_text(&files, &TextConfig::for_dataset(EMOTION)).unwrap();
    let cfg = TextConfig {
        encoding: TextEncoding::Tokens { length: 5 },
        ..TextConfig::for_dataset(EMOTION)
    };
    let data = load_text(&files, &cfg).unwrap();
    assert_eq!(
        data.vocabulary, bags.vocabulary,
        "the vocabulary does not depend on it"
    );
    assert_eq!(data.encoding, TextEncoding::Tokens { length: 5 });
    let test = read_corpus(EMOTION, TextFormat::Lines, &files.test).unwrap();
    assert_eq!(data.test.image_len(), 10);
    assert_eq!(data.test.labels(), bags.test.labels());
    assert_eq!(data.train.indices(), bags.train.indices());
    for (k, text) in test.texts.iter().enumerate() {
        let mut row = vec![0u8; 10];
        data.vocabulary.encode_tokens_into(text, &mut row);
        assert_eq!(&data.test.pixels()[k * 10..(k + 1) * 10], &row[..]);
    }
    let too_big = TextConfig {
        vocab_size: gtap_data::MAX_TOKEN_VOCABULARY + 1,
        ..cfg.clone()
    };
    let err = load_text(&files, &too_big).unwrap_err().to_string();
    assert!(err.contains("token ids take two bytes"), "{err}");
    let empty = TextConfig {
        encoding: TextEncoding::Tokens { length: 0 },
        ..cfg
    };
    let err = load_text(&files, &empty).unwrap_err().to_string();
    assert!(err.contains("length of at least 1"), "{err}");
}

#[test]
fn emotion_uses_val_as_probe() {
    let dir = tempfile::tempdir().unwrap();
    let files = emotion_txt(dir.path(), [30, 8, 6]);
    let data = load_text(&files, &TextConfig::for_dataset(EMOTION)).unwrap();
    assert_eq!(
        (data.train.len(), data.probe.len(), data.test.len()),
        (30, 8, 6)
    );
    assert_eq!(data.num_classes(), 6);
    assert_eq!(data.probe.indices(), (0..8).collect::<Vec<u32>>());
    let probe = read_corpus(EMOTION, TextFormat::Lines, files.probe.as_ref().unwrap()).unwrap();
    check_rows(&data.probe, &data, &probe);
    assert_eq!(data.train.class_counts(6), [5, 5, 5, 5, 5, 5]);
}

#[test]
fn parquet_gives_the_same_data_as_the_text_formats() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let cfg = tweets_cfg(6, 3, 50);
    assert_eq!(
        load_text(&tweets_csv(&a, 25, 4), &cfg).unwrap(),
        load_text(&tweets_parquet(&b, 25, 4), &cfg).unwrap()
    );
    let cfg = TextConfig::for_dataset(EMOTION);
    assert_eq!(
        load_text(&emotion_txt(&a, [12, 4, 3]), &cfg).unwrap(),
        load_text(&emotion_parquet(&b, [12, 4, 3]), &cfg).unwrap()
    );
}

#[test]
fn config_errors_say_what_is_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let tw = tweets_csv(dir.path(), 10, 2);
    let msg = |files: &TextFiles, cfg: &TextConfig| {
        let err = load_text(files, cfg).unwrap_err();
        assert!(matches!(err, DataError::Config { .. }), "{err}");
        err.to_string()
    };
    assert_mentions(
        &msg(&tw, &tweets_cfg(10, 0, 5)),
        &[
            "invalid tweets-topic configuration",
            "probe size 10 must be between 1 and 9",
            "topic_train.csv",
        ],
    );
    assert_mentions(&msg(&tw, &tweets_cfg(0, 0, 5)), &["probe size 0"]);
    assert_mentions(
        &msg(&tw, &tweets_cfg(2, 0, 0)),
        &["vocab_size must be at least 1"],
    );
    assert_mentions(
        &msg(
            &tw,
            &TextConfig {
                vocab_size: 5,
                encoding: TextEncoding::BagOfWords,
                holdout: None,
            },
        ),
        &["must be held out of train"],
    );
    let em = emotion_txt(dir.path(), [6, 2, 2]);
    assert_mentions(
        &msg(&em, &tweets_cfg(2, 0, 5)),
        &["invalid emotion configuration", "val.txt", "does not apply"],
    );
    let words = write(dir.path(), "train.txt", b"!!;joy\n...;sadness\n");
    let em = TextFiles { train: words, ..em };
    assert_mentions(
        &msg(&em, &TextConfig::for_dataset(EMOTION)),
        &["contain no words"],
    );
}

/// The error of reading `bytes` in `format`, the path it should name, and the directory
/// holding the file (deleted when dropped).
fn read_err(
    dataset: TextDataset,
    format: TextFormat,
    bytes: &[u8],
) -> (DataError, PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "file", bytes);
    (read_corpus(dataset, format, &path).unwrap_err(), path, dir)
}

#[test]
fn a_line_without_separator_names_file_and_line() {
    let (err, path, _dir) = read_err(
        EMOTION,
        TextFormat::Lines,
        b"ok;joy\nfine;love\nbroken line\n",
    );
    assert!(
        matches!(err, DataError::MissingSeparator { line: 3, .. }),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "{}: line 3 has no `;` separating text and label (expected `text;label`)",
            path.display()
        )
    );
    // A blank line inside the file is an error too; only the final newline is allowed.
    let (err, _, _dir) = read_err(EMOTION, TextFormat::Lines, b"ok;joy\n\nfine;love\n");
    assert!(
        matches!(err, DataError::MissingSeparator { line: 2, .. }),
        "{err}"
    );
}

#[test]
fn an_unknown_label_name_lists_the_known_ones() {
    let (err, path, _dir) = read_err(EMOTION, TextFormat::Lines, b"ok;joy\nhmm;boredom\n");
    assert!(
        matches!(err, DataError::UnknownLabel { line: 2, .. }),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "{}: line 2: unknown label `boredom` (expected one of sadness, joy, love, anger, fear, surprise)",
            path.display()
        )
    );
    // Label names are case-sensitive, as in the files.
    let (err, _, _dir) = read_err(EMOTION, TextFormat::Lines, b"ok;Joy\n");
    assert!(
        matches!(err, DataError::UnknownLabel { line: 1, .. }),
        "{err}"
    );
}

#[test]
fn a_label_out_of_range_names_file_and_line_or_row() {
    let (err, path, _dir) = read_err(TWEETS, TextFormat::Csv, b"text,label\na,3\nb,20\n");
    assert!(
        matches!(
            err,
            DataError::LabelOutOfRange {
                at: Location::Line(3),
                label: 20,
                classes: 20,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "{}: line 3: label 20 is out of range (classes are 0..=19)",
            path.display()
        )
    );
    let (err, _, _dir) = read_err(TWEETS, TextFormat::Csv, b"text,label\na,-1\n");
    assert!(
        matches!(err, DataError::LabelOutOfRange { label: -1, .. }),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("train.parquet");
    write_parquet(
        &path,
        vec![Some("a".into()), Some("b".into())],
        vec![Some(5), Some(6)],
    );
    let err = read_corpus(EMOTION, TextFormat::Parquet, &path).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::LabelOutOfRange {
                at: Location::Row(2),
                label: 6,
                classes: 6,
                ..
            }
        ),
        "{err}"
    );
    assert_mentions(
        &err.to_string(),
        &["train.parquet: row 2: label 6 is out of range (classes are 0..=5)"],
    );
}

#[test]
fn a_label_that_is_not_an_integer_names_the_line() {
    let (err, _, _dir) = read_err(TWEETS, TextFormat::Csv, b"text,label\na,1\nb,two\n");
    assert!(
        matches!(
            err,
            DataError::BadRecord {
                at: Location::Line(3),
                ..
            }
        ),
        "{err}"
    );
    assert_mentions(&err.to_string(), &["line 3: label `two` is not an integer"]);
}

#[test]
fn empty_files_are_errors() {
    for (dataset, format, bytes) in [
        (EMOTION, TextFormat::Lines, &b""[..]),
        (EMOTION, TextFormat::Lines, b"\n"),
        (TWEETS, TextFormat::Csv, b""),
        (TWEETS, TextFormat::Csv, b"text,label\n"),
    ] {
        let (err, path, _dir) = read_err(dataset, format, bytes);
        assert!(
            matches!(err, DataError::EmptyFile { .. }),
            "{bytes:?}: {err}"
        );
        assert_eq!(
            err.to_string(),
            format!("{}: file holds no examples", path.display())
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("test.parquet");
    write_parquet(&path, vec![], vec![]);
    let err = read_corpus(EMOTION, TextFormat::Parquet, &path).unwrap_err();
    assert!(matches!(err, DataError::EmptyFile { .. }), "{err}");
}

#[test]
fn invalid_utf8_names_the_line() {
    let (err, path, _dir) = read_err(
        EMOTION,
        TextFormat::Lines,
        b"ok;joy\nfine;love\nbad \xff\xfe;fear\n",
    );
    assert!(
        matches!(err, DataError::InvalidUtf8 { line: 3, .. }),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        format!("{}: line 3 is not valid UTF-8", path.display())
    );
    let (err, _, _dir) = read_err(
        TWEETS,
        TextFormat::Csv,
        b"text,label\na,1\nb,2\n\"bad \xc3\",3\n",
    );
    assert!(
        matches!(err, DataError::InvalidUtf8 { line: 4, .. }),
        "{err}"
    );
}

#[test]
fn malformed_csv_records_and_headers_name_the_line() {
    let (err, _, _dir) = read_err(TWEETS, TextFormat::Csv, b"text,label\na,1\nb\n");
    assert!(
        matches!(
            err,
            DataError::BadRecord {
                at: Location::Line(3),
                ..
            }
        ),
        "{err}"
    );
    let (err, _, _dir) = read_err(TWEETS, TextFormat::Csv, b"tweet,label\na,1\n");
    assert!(
        matches!(
            err,
            DataError::BadRecord {
                at: Location::Line(1),
                ..
            }
        ),
        "{err}"
    );
    assert_mentions(
        &err.to_string(),
        &["header has no `text` column (found: tweet, label)"],
    );
}

#[test]
fn malformed_parquet_names_the_column_or_row() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("train.parquet");
    write_parquet(&path, vec![Some("a".into()), None], vec![Some(1), Some(2)]);
    let err = read_corpus(TWEETS, TextFormat::Parquet, &path).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::BadRecord {
                at: Location::Row(2),
                ..
            }
        ),
        "{err}"
    );
    assert_mentions(&err.to_string(), &["row 2: `text` is null"]);

    let mut df = df!("sentence" => ["a"], "label" => [1i64]).unwrap();
    ParquetWriter::new(File::create(&path).unwrap())
        .finish(&mut df)
        .unwrap();
    let err = read_corpus(TWEETS, TextFormat::Parquet, &path).unwrap_err();
    assert!(matches!(err, DataError::BadParquet { .. }), "{err}");
    assert_mentions(
        &err.to_string(),
        &["no `text` column (found: sentence, label)"],
    );

    let mut df = df!("text" => ["a"], "label" => ["joy"]).unwrap();
    ParquetWriter::new(File::create(&path).unwrap())
        .finish(&mut df)
        .unwrap();
    let err = read_corpus(EMOTION, TextFormat::Parquet, &path).unwrap_err();
    assert_mentions(
        &err.to_string(),
        &["column `label` has type str, expected integers"],
    );

    std::fs::write(&path, b"not parquet at all").unwrap();
    let err = read_corpus(EMOTION, TextFormat::Parquet, &path).unwrap_err();
    assert!(matches!(err, DataError::BadParquet { .. }), "{err}");
    assert_mentions(&err.to_string(), &["train.parquet: invalid parquet file"]);
}

#[test]
fn missing_files_with_never_list_names_places_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let err = text_files(TWEETS, dir.path(), FetchPolicy::Never).unwrap_err();
    assert!(matches!(err, DataError::Missing { .. }), "{err}");
    let folder = dir.path().join("twitter-financial-news-topic");
    assert_mentions(
        &err.to_string(),
        &[
            "tweets-topic files missing: topic_train.csv, topic_valid.csv not found in",
            &dir.path().display().to_string(),
            &format!("{} (does not exist)", folder.display()),
            "downloading is disabled",
            "--data-dir",
            "GTAP_DATA_DIR",
            "or the Hugging Face parquet files train.parquet + validation.parquet",
        ],
    );
    // One of three CARER files present: the other two are named.
    let sub = dir.path().join("emotion");
    std::fs::create_dir(&sub).unwrap();
    write(&sub, "val.txt", b"x;joy\n");
    let msg = text_files(EMOTION, dir.path(), FetchPolicy::Never)
        .unwrap_err()
        .to_string();
    assert_mentions(
        &msg,
        &[
            "emotion files missing: train.txt, test.txt not found",
            "holding the files train.txt, val.txt, test.txt, or the Hugging Face parquet files \
             train.parquet + validation.parquet + test.parquet",
        ],
    );
}

#[test]
fn failed_downloads_name_url_and_cause_and_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let dead = dead_url();
    let err = text_files(
        EMOTION,
        dir.path(),
        FetchPolicy::DownloadFrom(vec![dead.clone()]),
    )
    .unwrap_err();
    assert_mentions(
        &err.to_string(),
        &[
            "emotion files missing",
            &format!("download from {dead}train.txt failed: "),
            "GTAP_DATA_DIR",
        ],
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "left files behind"
    );
}

#[test]
fn canonical_urls_are_pinned() {
    for d in TextDataset::ALL {
        for (name, sha, url) in d.canonical_files() {
            assert_eq!(sha.len(), 64, "{name}");
            assert!(url.starts_with("https://"), "{url}");
            assert!(url.contains(name), "{url}");
        }
    }
}

#[test]
fn the_dataset_folder_or_its_parent_is_searched_and_checksums_apply() {
    // Fixture files carry the canonical names but not the canonical bytes: the checksum
    // check shows which layout was picked.
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("twitter-financial-news-topic");
    std::fs::create_dir(&sub).unwrap();
    tweets_csv(&sub, 4, 2);
    tweets_parquet(&sub, 4, 2);
    for given in [dir.path(), sub.as_path()] {
        let err = text_files(TWEETS, given, FetchPolicy::Never).unwrap_err();
        assert!(matches!(err, DataError::Checksum { .. }), "{err}");
        assert_mentions(&err.to_string(), &["topic_train.csv: sha256 mismatch"]);
    }
}

#[test]
fn text_files_are_preferred_over_parquet_and_parquet_alone_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("emotion");
    std::fs::create_dir(&sub).unwrap();
    let expected = emotion_parquet(&sub, [5, 2, 2]);
    // Only parquet (CARER's has no pinned digest): found from the parent and the folder.
    assert_eq!(
        text_files(EMOTION, dir.path(), FetchPolicy::Never).unwrap(),
        expected
    );
    assert_eq!(
        text_files(EMOTION, &sub, FetchPolicy::Never).unwrap(),
        expected
    );
    // With the text files beside it, those win (and are checked against their digests).
    emotion_txt(&sub, [5, 2, 2]);
    let err = text_files(EMOTION, dir.path(), FetchPolicy::Never).unwrap_err();
    assert_mentions(&err.to_string(), &["train.txt: sha256 mismatch"]);
}
