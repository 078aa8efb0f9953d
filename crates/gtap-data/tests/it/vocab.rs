//! Tokeniser and vocabulary: exact tokens, deterministic ranking, JSON round trip.

use std::path::Path;

use gtap_data::{tokenize, DataError, Vocabulary, FIRST_WORD_TOKEN, PAD_TOKEN, UNKNOWN_TOKEN};

#[track_caller]
fn check(text: &str, expected: &[&str]) {
    assert_eq!(tokenize(text), expected, "tokenize({text:?})");
}

#[test]
fn tokens_are_lower_cased_runs_of_word_characters() {
    check("", &[]);
    check("  ;; ", &[]);
    check(
        "i didnt feel humiliated",
        &["i", "didnt", "feel", "humiliated"],
    );
    check("Hello, World!", &["hello", "world"]);
    check("Fed's 0.5%-hike_ok", &["fed", "s", "0", "5", "hike_ok"]);
    check(
        "$AAPL up 3% https://t.co/QPN8Gwl7Uh",
        &["aapl", "up", "3", "https", "t", "co", "qpn8gwl7uh"],
    );
    check("Ünïcode café ÉTÉ", &["ünïcode", "café", "été"]);
    check("M&amp;A", &["m", "amp", "a"]);
    check("__init__ x_1", &["__init__", "x_1"]);
}

fn words(v: &Vocabulary) -> Vec<&str> {
    v.words().iter().map(String::as_str).collect()
}

#[test]
fn vocabulary_ranks_by_document_frequency_then_word() {
    // Document frequencies: a 3 (repeats within a text count once), b 2, c 2, d 1, e 1.
    let texts = ["b a a a", "a c", "c b a", "d", "E"];
    assert_eq!(
        words(&Vocabulary::build(&texts, 10)),
        ["a", "b", "c", "d", "e"]
    );
    assert_eq!(words(&Vocabulary::build(&texts, 2)), ["a", "b"]);
    assert_eq!(words(&Vocabulary::build(&texts, 4)), ["a", "b", "c", "d"]);
    assert!(Vocabulary::build(&texts, 0).is_empty());
    assert!(Vocabulary::build(&["", "!!"], 5).is_empty());
}

#[test]
fn vocabulary_does_not_depend_on_text_order() {
    let texts: Vec<String> = (0..200)
        .map(|i| format!("w{} w{} common x{}", i % 7, i % 13, i % 3))
        .collect();
    let mut reversed = texts.clone();
    reversed.reverse();
    let a = Vocabulary::build(&texts, 12);
    assert_eq!(a, Vocabulary::build(&reversed, 12));
    assert_eq!(a, Vocabulary::build(&texts, 12));
    assert_eq!(a.words()[0], "common");
    assert_eq!(a.len(), 12);
}

#[test]
fn encoding_is_binary_term_presence() {
    let v = Vocabulary::build(&["a b c", "a b", "a"], 3); // a, b, c
    assert_eq!(v.encode("c c c A"), [1, 0, 1]);
    assert_eq!(v.encode("unknown words only"), [0, 0, 0]);
    assert_eq!(v.encode("B; b. b!"), [0, 1, 0]);
    assert_eq!(v.index_of("b"), Some(1));
    assert_eq!(v.index_of("z"), None);
}

#[test]
fn token_sequences_are_two_byte_ids_in_word_order_cut_and_padded() {
    let v = Vocabulary::build(&["a b c", "a b", "a"], 3); // a, b, c: ids 2, 3, 4
    assert_eq!(v.token_ids(), 3 + FIRST_WORD_TOKEN);
    let tokens = |text: &str, length: usize| {
        let mut row = vec![0xAA; 2 * length]; // stale bytes must be overwritten
        v.encode_tokens_into(text, &mut row);
        row.chunks_exact(2)
            .map(|p| u16::from_le_bytes([p[0], p[1]]))
            .collect::<Vec<u16>>()
    };
    assert_eq!(
        tokens("C a zzz B", 6),
        [4, 2, UNKNOWN_TOKEN, 3, PAD_TOKEN, PAD_TOKEN]
    );
    assert_eq!(tokens("c c c a b", 2), [4, 4], "cut after `length` words");
    assert_eq!(tokens("", 3), [PAD_TOKEN; 3]);
    // Ids above 255 use the high byte: word 300 of a larger vocabulary is id 302.
    let words: Vec<String> = (0..400).map(|i| format!("w{i:03}")).collect();
    let texts: Vec<String> = words
        .iter()
        .map(|w| format!("{w} {}", words.join(" ")))
        .collect();
    let big = Vocabulary::build(&texts, 400);
    let mut row = [0u8; 2];
    big.encode_tokens_into(big.words()[300].as_str(), &mut row);
    assert_eq!(u16::from_le_bytes(row), 302);
    assert_eq!(row, [302 % 256, 1].map(|b| b as u8));
}

#[test]
fn vocabulary_round_trips_through_json_in_index_order() {
    let v = Vocabulary::build(&["zeta alpha", "alpha mid", "zeta"], 3);
    let json = v.to_json();
    let list: Vec<String> = serde_json::from_slice(&json).unwrap();
    assert_eq!(list, ["alpha", "zeta", "mid"]);
    assert_eq!(
        Vocabulary::from_json(&json, Path::new("v.json")).unwrap(),
        v
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vocabulary.json");
    v.write_to(&path).unwrap();
    assert_eq!(Vocabulary::read_from(&path).unwrap(), v);
}

#[test]
fn malformed_vocabulary_files_are_rejected() {
    let check = |json: &str, expected: &str| {
        let err = Vocabulary::from_json(json.as_bytes(), Path::new("v.json")).unwrap_err();
        assert!(matches!(err, DataError::BadVocabulary { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.starts_with("v.json: invalid vocabulary file"), "{msg}");
        assert!(msg.contains(expected), "{msg}");
    };
    check(r#"{"words": []}"#, "expected a JSON list of words");
    check(r#"["a", "b", "a"]"#, r#"entry 2 ("a") occurs twice"#);
    check(
        r#"["a", "B"]"#,
        r#"entry 1 ("B") is not a single lower-case token"#,
    );
    check(r#"["two words"]"#, "is not a single lower-case token");
    check(r#"[""]"#, "is not a single lower-case token");
}
