//! Search benchmark: seeds a fresh database with many messages (1,000,000 by default)
//! spread over direct chats and groups, then times searches of one user who is in 50
//! chats, through the same store function the API calls.
//!
//! ```sh
//! cargo run --release --example search_bench -- --database sqlite
//! cargo run --release --example search_bench -- --database "$TEST_MYSQL_URL"
//! ```
//!
//! With a MySQL URL it creates (and afterwards drops) a database of its own on that
//! server. Seeding writes rows directly (the messages, and their postings made by the
//! application's tokenizer, `store::rich::index_rows`), not through the send path: it
//! measures search, not sending.

use std::time::{Duration, Instant};

use clap::Parser;
use messenger::{
    db::Db,
    store::{
        messages::{Conversation, Message},
        rich::{self, RichFields},
        search::{self, SearchQuery, SearchText},
    },
};

mod support;
use support::{exec, percentile, BenchDb};

#[derive(Parser)]
struct Options {
    /// `sqlite` (a temporary file) or a MySQL URL whose server the bench may create a
    /// database in.
    #[arg(long, default_value = "sqlite")]
    database: String,
    #[arg(long, default_value_t = 1_000_000)]
    messages: usize,
    #[arg(long, default_value_t = 5_000)]
    users: usize,
    /// Group chats (8 members each); the rest of the chats are direct.
    #[arg(long, default_value_t = 2_000)]
    groups: usize,
    #[arg(long, default_value_t = 3_000)]
    direct_chats: usize,
    /// The searching user's chats: this many groups, the rest of 50 direct.
    #[arg(long, default_value_t = 30)]
    searcher_groups: usize,
    #[arg(long, default_value_t = 400)]
    queries: usize,
    /// Keep the MySQL database afterwards.
    #[arg(long)]
    keep: bool,
}

/// A small deterministic generator (xorshift), so every run seeds the same data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// Roughly Zipf-distributed rank in `0..n`: a few words are everywhere.
    fn zipf(&mut self, n: usize) -> usize {
        let u = (self.next() % 1_000_000) as f64 / 1_000_000.0;
        ((n as f64).powf(u) as usize).saturating_sub(1).min(n - 1)
    }
}

const SYLLABLES: &[&str] = &[
    "ka", "lo", "mi", "ne", "ru", "ta", "po", "si", "ve", "da", "gu", "fe", "zo", "bi", "ha", "ju",
    "we", "xo", "qui", "ber",
];
const GERMAN: &[&str] = &[
    "Grüße",
    "München",
    "Straße",
    "schön",
    "Käse",
    "Brötchen",
    "Mädchen",
    "Tür",
    "fünf",
    "Übung",
];
const JAPANESE: &[&str] = &[
    "明日は東京タワーに行きます",
    "今日は雨が降っています",
    "我爱北京天安门",
    "新しいプロジェクトを始めましょう",
    "会議は三時からです",
];

fn vocabulary(size: usize) -> Vec<String> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut words = std::collections::BTreeSet::new();
    while words.len() < size {
        let n = 2 + rng.below(3);
        let w: String = (0..n)
            .map(|_| SYLLABLES[rng.below(SYLLABLES.len())])
            .collect();
        words.insert(w);
    }
    let mut words: Vec<String> = words.into_iter().collect();
    // Shuffle so that the Zipf rank is not alphabetical.
    for i in (1..words.len()).rev() {
        let j = rng.below(i + 1);
        words.swap(i, j);
    }
    words
}

fn text(rng: &mut Rng, vocabulary: &[String]) -> String {
    let roll = rng.below(100);
    if roll < 4 {
        return JAPANESE[rng.below(JAPANESE.len())].to_string();
    }
    let n = 5 + rng.below(10);
    let mut words: Vec<&str> = (0..n)
        .map(|_| vocabulary[rng.zipf(vocabulary.len())].as_str())
        .collect();
    if roll < 10 {
        words.push(GERMAN[rng.below(GERMAN.len())]);
    }
    words.join(" ")
}

#[tokio::main]
async fn main() {
    let o = Options::parse();
    let bench = BenchDb::create(&o.database, "search_bench").await;
    let url = bench.url.clone();
    // One connection: the seeding's session settings hold for every statement.
    let db = Db::connect(&url, 1).await.expect("connect");
    db.migrate().await.expect("migrate");
    let fast = match db {
        Db::MySql(_) => "SET SESSION foreign_key_checks = 0, unique_checks = 0;",
        Db::Sqlite(_) => "PRAGMA synchronous = OFF;",
    };
    println!(
        "database: {} ({})",
        db.backend_name(),
        url.split('@').next_back().unwrap_or("")
    );

    let started = Instant::now();
    let mut rng = Rng(42);
    let vocabulary = vocabulary(20_000);
    // Users.
    for chunk in (1..=o.users).collect::<Vec<_>>().chunks(1000) {
        let rows: Vec<String> = chunk
            .iter()
            .map(|i| format!("({i}, 'u{i}', 'x', 'u{i}@example.com')"))
            .collect();
        exec(
            &db,
            &format!(
                "INSERT INTO user (user_id, username, password_hash, email) VALUES {}",
                rows.join(", ")
            ),
        )
        .await;
    }
    // Chats: groups of 8, direct pairs; user 1 searches, in `searcher_groups` groups and
    // 50 - that direct chats.
    let searcher = 1;
    let mut chats: Vec<(Conversation, Vec<i32>)> = Vec::new();
    let mut members_rows = Vec::new();
    let mut group_rows = Vec::new();
    for g in 1..=o.groups {
        let mut members: Vec<i32> = Vec::new();
        if g <= o.searcher_groups {
            members.push(searcher);
        }
        while members.len() < 8 {
            let u = 2 + rng.below(o.users - 1) as i32;
            if !members.contains(&u) {
                members.push(u);
            }
        }
        group_rows.push(format!("({g}, 'g{g}', {})", members[0]));
        for m in &members {
            members_rows.push(format!("({g}, {m})"));
        }
        chats.push((Conversation::Group(g as i32), members));
    }
    for chunk in group_rows.chunks(1000) {
        exec(
            &db,
            &format!(
                "INSERT INTO group_chat (group_chat_id, name, creator_id) VALUES {}",
                chunk.join(", ")
            ),
        )
        .await;
    }
    for chunk in members_rows.chunks(1000) {
        exec(
            &db,
            &format!(
                "INSERT INTO group_chat_member (group_chat_id, member_id) VALUES {}",
                chunk.join(", ")
            ),
        )
        .await;
    }
    let searcher_directs = 50 - o.searcher_groups.min(50);
    for d in 0..o.direct_chats {
        let a = if d < searcher_directs {
            searcher
        } else {
            2 + rng.below(o.users - 1) as i32
        };
        let mut b = 2 + rng.below(o.users - 1) as i32;
        while b == a {
            b = 2 + rng.below(o.users - 1) as i32;
        }
        chats.push((Conversation::Direct(b), vec![a, b]));
    }
    // Messages and their postings, 5,000 a transaction.
    let base = time::macros::datetime!(2026-01-01 0:00);
    let mut seeded = 0;
    while seeded < o.messages {
        let n = (o.messages - seeded).min(5000);
        let mut batch = Vec::with_capacity(n);
        for k in 0..n {
            let id = (seeded + k + 1) as i32;
            let (conv, members) = &chats[rng.below(chats.len())];
            let sender = members[rng.below(members.len())];
            let (reciever_id, group_chat_id) = match conv {
                Conversation::Group(g) => (None, Some(*g)),
                Conversation::Direct(_) => (
                    Some(if sender == members[0] {
                        members[1]
                    } else {
                        members[0]
                    }),
                    None,
                ),
            };
            batch.push(Message {
                message_id: id,
                sender_id: Some(sender),
                sender_username: None,
                reciever_id,
                content: text(&mut rng, &vocabulary),
                group_chat_id,
                created_date_time: base + Duration::from_secs(id as u64 * 20),
                last_edited_date_time: None,
                seen: Some(false),
                attachments: Vec::new(),
                rich: RichFields::default(),
            });
        }
        let rows: Vec<String> = batch
            .iter()
            .map(|m| {
                format!(
                    "({}, {}, {}, '{}', '{}', {}, 0)",
                    m.message_id,
                    m.sender_id.unwrap(),
                    m.reciever_id.map_or("NULL".into(), |r| r.to_string()),
                    m.content.replace('\'', "''"),
                    messenger::db::format_time(m.created_date_time).replace('T', " "),
                    m.group_chat_id.map_or("NULL".into(), |g| g.to_string()),
                )
            })
            .collect();
        let (_, postings) = rich::index_rows(&batch.iter().collect::<Vec<_>>());
        let mut sql = format!(
            "{fast} BEGIN; INSERT INTO message (message_id, sender_id, reciever_id, content, created_date_time, group_chat_id, seen) VALUES {};",
            rows.join(", ")
        );
        for chunk in postings.chunks(5000) {
            sql.push_str(&format!(
                " INSERT INTO message_search (term, owner_id, message_id, sender_id) VALUES {};",
                chunk.join(", ")
            ));
        }
        sql.push_str(" COMMIT;");
        exec(&db, &sql).await;
        seeded += n;
        if seeded % 100_000 == 0 {
            println!("  {seeded} messages seeded ({:.0?})", started.elapsed());
        }
    }
    match &db {
        Db::MySql(pool) => {
            sqlx::raw_sql("SET SESSION foreign_key_checks = 1, unique_checks = 1; ANALYZE TABLE message, message_search, group_chat_member").execute(pool).await.ok();
        }
        Db::Sqlite(pool) => {
            sqlx::raw_sql("PRAGMA synchronous = NORMAL; ANALYZE")
                .execute(pool)
                .await
                .ok();
        }
    }
    println!(
        "seeded {} messages in {:.1?}",
        o.messages,
        started.elapsed()
    );

    // Queries of the searcher: common, middling and rare words, two words, German, CJK,
    // and with each filter.
    let kinds: Vec<(&str, MakeQuery)> = vec![
        (
            "common word",
            Box::new(|r: &mut Rng| q(&vocabulary[r.below(5)], None, None)),
        ),
        (
            "middling word",
            Box::new(|r: &mut Rng| q(&vocabulary[50 + r.below(200)], None, None)),
        ),
        (
            "rare word",
            Box::new(|r: &mut Rng| q(&vocabulary[5000 + r.below(15000)], None, None)),
        ),
        (
            "two words",
            Box::new(|r: &mut Rng| {
                q(
                    &format!(
                        "{} {}",
                        vocabulary[r.below(20)],
                        vocabulary[20 + r.below(200)]
                    ),
                    None,
                    None,
                )
            }),
        ),
        (
            "German",
            Box::new(|r: &mut Rng| q(GERMAN[r.below(GERMAN.len())], None, None)),
        ),
        (
            "Japanese/Chinese",
            Box::new(|r: &mut Rng| {
                q(
                    ["東京タワー", "北京", "会議", "プロジェクト"][r.below(4)],
                    None,
                    None,
                )
            }),
        ),
        (
            "common word, in one group",
            Box::new(|r: &mut Rng| {
                q(
                    &vocabulary[r.below(5)],
                    Some(Conversation::Group(
                        1 + r.below(o.searcher_groups.max(1)) as i32,
                    )),
                    None,
                )
            }),
        ),
        (
            "common word, from a person",
            Box::new(|r: &mut Rng| {
                q(
                    &vocabulary[r.below(5)],
                    None,
                    Some(2 + r.below(o.users - 1) as i32),
                )
            }),
        ),
    ];
    let mut all = Vec::new();
    let mut rng = Rng(7);
    println!(
        "{:<28} {:>8} {:>8} {:>8} {:>8} {:>9}",
        "query", "p50", "p95", "p99", "max", "hits/avg"
    );
    for (name, make) in &kinds {
        let mut times = Vec::new();
        let mut hits = 0;
        for _ in 0..o.queries / kinds.len() {
            let query = make(&mut rng);
            let t = Instant::now();
            let page = search::search(&db, searcher, &query, None, 20)
                .await
                .expect("search");
            times.push(t.elapsed());
            hits += page.results.len();
        }
        times.sort();
        println!(
            "{name:<28} {:>8.1?} {:>8.1?} {:>8.1?} {:>8.1?} {:>9.1}",
            percentile(&times, 0.5),
            percentile(&times, 0.95),
            percentile(&times, 0.99),
            times.last().unwrap(),
            hits as f64 / times.len() as f64
        );
        all.extend(times);
    }
    all.sort();
    println!(
        "{:<28} {:>8.1?} {:>8.1?} {:>8.1?} {:>8.1?}",
        "all",
        percentile(&all, 0.5),
        percentile(&all, 0.95),
        percentile(&all, 0.99),
        all.last().unwrap()
    );
    db.close().await;
    bench.finish(o.keep).await;
}

/// Makes one query of a kind.
type MakeQuery<'a> = Box<dyn Fn(&mut Rng) -> SearchQuery + 'a>;

fn q(text: &str, conversation: Option<Conversation>, from: Option<i32>) -> SearchQuery {
    SearchQuery {
        text: SearchText::parse(text).expect("a query"),
        conversation,
        from,
        after: None,
        before: None,
    }
}
