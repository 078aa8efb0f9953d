//! Tests on the real text datasets (`/work/shared/datasets/{twitter-financial-news-topic,
//! emotion}`). They fail when the files are absent, unless `GTAP_SKIP_REAL_DATA=1`.

use gtap_data::{
    load_text, read_corpus, text_files, FetchPolicy, TextConfig, TextDataset, TextFiles, TextFormat,
};

use crate::fixtures::real_dataset_dir;

/// The real files of `dataset`, checksums verified, found from the parent directory.
fn files(dataset: TextDataset) -> Option<TextFiles> {
    let dir = real_dataset_dir(dataset.folder())?;
    let parent = dir.parent().expect("datasets directory");
    Some(text_files(dataset, parent, FetchPolicy::Never).unwrap())
}

#[test]
fn real_tweets_topic() {
    let Some(files) = files(TextDataset::TweetsTopic) else {
        return;
    };
    assert_eq!(
        files.format,
        TextFormat::Csv,
        "CSV is preferred over parquet"
    );
    let data = load_text(&files, &TextConfig::for_dataset(TextDataset::TweetsTopic)).unwrap();
    assert_eq!(
        (data.train.len(), data.probe.len(), data.test.len()),
        (14_990, 2_000, 4_117)
    );
    assert_eq!(data.train.len() + data.probe.len(), 16_990);
    assert_eq!(data.vocabulary.len(), 5000);
    assert_eq!(data.train.image_len(), 5000);
    let counts = |s: &gtap_data::Split| s.class_counts(20);
    let all: Vec<usize> = counts(&data.train)
        .iter()
        .zip(counts(&data.probe))
        .map(|(a, b)| a + b)
        .collect();
    assert_eq!(all[2], 3545, "Company | Product News is the largest topic");
    assert_eq!(all.iter().sum::<usize>(), 16_990);
    assert!(counts(&data.test).iter().all(|&c| c > 0));
    // Link fragments are the most common "words" of tweets.
    let mut top: Vec<&str> = data.vocabulary.words()[..3]
        .iter()
        .map(String::as_str)
        .collect();
    top.sort_unstable();
    assert_eq!(top, ["co", "https", "t"]);
}

#[test]
fn real_tweets_parquet_holds_the_csv_rows() {
    let Some(dir) = real_dataset_dir(TextDataset::TweetsTopic.folder()) else {
        return;
    };
    for (csv, parquet, rows) in [
        ("topic_train.csv", "train.parquet", 16_990),
        ("topic_valid.csv", "validation.parquet", 4_117),
    ] {
        let a = read_corpus(TextDataset::TweetsTopic, TextFormat::Csv, &dir.join(csv)).unwrap();
        let b = read_corpus(
            TextDataset::TweetsTopic,
            TextFormat::Parquet,
            &dir.join(parquet),
        )
        .unwrap();
        assert_eq!(a.len(), rows);
        assert_eq!(a, b, "{csv} vs {parquet}");
    }
}

#[test]
fn real_emotion() {
    let Some(files) = files(TextDataset::Emotion) else {
        return;
    };
    assert_eq!(files.format, TextFormat::Lines);
    let data = load_text(&files, &TextConfig::for_dataset(TextDataset::Emotion)).unwrap();
    assert_eq!(
        (data.train.len(), data.probe.len(), data.test.len()),
        (16_000, 2_000, 2_000)
    );
    assert_eq!(data.vocabulary.len(), 5000);
    // Joy and sadness dominate, surprise is rarest (as on the dataset card).
    let c = data.train.class_counts(6);
    assert_eq!(c.iter().sum::<usize>(), 16_000);
    assert!(
        c[1] > c[0] && c[0] > c[3] && c[5] == *c.iter().min().unwrap(),
        "{c:?}"
    );
    assert_eq!(data.vocabulary.words()[..2], ["i", "feel"]);
}
