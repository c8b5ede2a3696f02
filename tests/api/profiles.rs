//! The profiles context through HTTP: the own profile as a merge patch, what others see,
//! lookalike usernames, renames, attributes, settings, activity, export and deletion.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{admin, problem, spawn_app, spawn_app_with, Options, TestApp, PASSWORD};

/// A verified user logged in: (id, access token).
pub(crate) async fn user(app: &TestApp, email: &str, username: &str) -> (String, String) {
    app.verified_user(email, Some(username)).await;
    let pair = app.login_ok(email, PASSWORD).await;
    let token = pair["access_token"].as_str().unwrap().to_owned();
    let me: Value = app
        .get_bearer("/v1/users/me", &token)
        .await
        .json()
        .await
        .unwrap();
    (me["id"].as_str().unwrap().to_owned(), token)
}

async fn patch(app: &TestApp, path: &str, token: &str, body: Value) -> reqwest::Response {
    app.client
        .patch(app.url(path))
        .bearer_auth(token)
        .header("content-type", "application/merge-patch+json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

async fn put(app: &TestApp, path: &str, token: &str, body: Value) -> reqwest::Response {
    app.client
        .put(app.url(path))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn get_as(app: &TestApp, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut r = app.client.get(app.url(path));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    r.send().await.unwrap()
}

#[actix_web::test]
async fn a_merge_patch_edits_the_own_profile_and_others_see_what_visibility_allows() {
    let app = spawn_app().await;
    let (ann, ann_token) = user(&app, "ann@example.com", "ann").await;
    let (_, bob_token) = user(&app, "bob@example.com", "bob").await;

    let r = patch(
        &app,
        "/v1/users/me",
        &ann_token,
        json!({"display_name": "Анна Ёлкина", "bio": "line one\nline two", "country": "ru",
               "timezone": "Europe/Moscow", "phone": "+7 916 123-45-67", "locale": "ru",
               "visibility": "public"}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let me: Value = r.json().await.unwrap();
    assert_eq!(me["display_name"], "Анна Ёлкина");
    assert_eq!(me["country"], "RU");
    assert_eq!(me["phone"], "+79161234567");
    assert_eq!(
        (me["locale"].as_str(), me["email"].as_str()),
        (Some("ru"), Some("ann@example.com"))
    );

    // null clears; absent keeps.
    let me: Value = patch(&app, "/v1/users/me", &ann_token, json!({"bio": null}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (me["bio"].clone(), me["country"].clone()),
        (Value::Null, json!("RU"))
    );
    assert_eq!(
        app.get_bearer("/v1/users/me", &ann_token)
            .await
            .json::<Value>()
            .await
            .unwrap()["bio"],
        Value::Null
    );

    // Public: anyone sees the public part, never email, phone or time zone.
    let path = format!("/v1/users/{ann}");
    let seen: Value = get_as(&app, &path, None).await.json().await.unwrap();
    assert_eq!(seen["username"], "ann");
    assert_eq!(seen["display_name"], "Анна Ёлкина");
    for private in ["email", "phone", "timezone", "settings"] {
        assert!(seen.get(private).is_none(), "{private} leaked: {seen}");
    }

    // Users: only signed-in callers; private: nobody but the owner. Hidden = unknown.
    patch(
        &app,
        "/v1/users/me",
        &ann_token,
        json!({"visibility": "users"}),
    )
    .await;
    let (s, hidden) = problem(get_as(&app, &path, None).await).await;
    let (s2, unknown) =
        problem(get_as(&app, &format!("/v1/users/{}", uuid::Uuid::new_v4()), None).await).await;
    assert_eq!((s, s2), (StatusCode::NOT_FOUND, StatusCode::NOT_FOUND));
    assert_eq!(
        hidden, unknown,
        "an invisible profile answers exactly like an unknown id"
    );
    assert_eq!(
        get_as(&app, &path, Some(&bob_token)).await.status(),
        StatusCode::OK
    );
    patch(
        &app,
        "/v1/users/me",
        &ann_token,
        json!({"visibility": "private"}),
    )
    .await;
    assert_eq!(
        get_as(&app, &path, Some(&bob_token)).await.status(),
        StatusCode::NOT_FOUND
    );
    let own: Value = get_as(&app, &path, Some(&ann_token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        own["email"], "ann@example.com",
        "the owner sees the whole profile"
    );

    // The event names what changed; values only while the profile was public.
    app.wait_outbox_drained().await;
    let events = app.events_of_type("profile.updated").await;
    let first = &events[0]["data"];
    assert_eq!(first["user_id"], ann.as_str());
    assert!(first["changed"]
        .as_array()
        .unwrap()
        .contains(&json!("phone")));
    assert_eq!(first["values"]["display_name"], "Анна Ёлкина");
    assert!(first["values"].get("phone").is_none() && first["values"].get("timezone").is_none());
    let last = &events.last().unwrap()["data"];
    assert_eq!(last["changed"], json!(["visibility"]));
    assert!(last.get("values").is_none(), "{last}");
}

#[actix_web::test]
async fn bad_edits_name_every_field_and_change_nothing() {
    let app = spawn_app().await;
    let (_, token) = user(&app, "cat@example.com", "cat").await;
    let (s, b) = problem(
        patch(
            &app,
            "/v1/users/me",
            &token,
            json!({"display_name": "", "country": "XX", "timezone": "Mars/Base", "phone": "12345",
                   "locale": "fr", "visibility": "friends", "email": "x@example.com",
                   "bio": "b".repeat(501), "username": "a b", "attributes": {"x": 1}}),
        )
        .await,
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    let fields: Vec<&str> = b["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    for f in [
        "display_name",
        "country",
        "timezone",
        "phone",
        "locale",
        "visibility",
        "email",
        "bio",
        "username",
    ] {
        assert!(fields.contains(&f), "{f} not named in {b}");
    }
    // An undeclared attribute is refused by the context (no attributes declared here).
    let (s, b) = problem(
        patch(
            &app,
            "/v1/users/me",
            &token,
            json!({"attributes": {"x": 1}}),
        )
        .await,
    )
    .await;
    assert_eq!(
        (s, b["errors"][0]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("attributes.x"))
    );
    for body in ["[1]", "\"x\"", "{", "null"] {
        let r = app
            .client
            .patch(app.url("/v1/users/me"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{body}");
    }
    let me: Value = app
        .get_bearer("/v1/users/me", &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (me["display_name"].clone(), me["username"].clone()),
        (Value::Null, json!("cat"))
    );
    assert!(app.events_of_type("profile.updated").await.is_empty());
}

#[actix_web::test]
async fn a_lookalike_username_is_refused_and_a_renamed_one_is_held_for_thirty_days() {
    let app = spawn_app().await;
    let (_, coco) = user(&app, "coco@example.com", "coco").await;
    let (_, dan) = user(&app, "dan@example.com", "dan").await;

    // All-Cyrillic "сосо" reads as "coco"; "COCO" is the same name; mixing scripts is refused.
    for name in ["сосо", "COCO", "c0co"] {
        let (s, b) =
            problem(patch(&app, "/v1/users/me", &dan, json!({"username": name})).await).await;
        assert_eq!(
            (s, b["code"].as_str()),
            (StatusCode::CONFLICT, Some("username_taken")),
            "{name}"
        );
        let r = app
            .register(
                &format!("x{}@example.com", name.len()),
                PASSWORD,
                Some(name),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CONFLICT, "registering {name}");
    }
    let (s, b) = problem(patch(&app, "/v1/users/me", &dan, json!({"username": "dаn"})).await).await;
    assert_eq!(
        (s, b["errors"][0]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("mixed_script"))
    );

    // A rename frees nothing for 30 days, except for its former owner.
    let r = patch(&app, "/v1/users/me", &coco, json!({"username": "chanel"})).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        patch(&app, "/v1/users/me", &dan, json!({"username": "coco"}))
            .await
            .status(),
        StatusCode::CONFLICT
    );
    assert_eq!(
        app.login("coco", PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(app.login("chanel", PASSWORD).await.status(), StatusCode::OK);
    app.advance(31 * 24 * 3600);
    let dan = app.login_ok("dan@example.com", PASSWORD).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let me: Value = patch(&app, "/v1/users/me", &dan, json!({"username": "coco"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["username"], "coco");
}

#[actix_web::test]
async fn the_owner_or_an_admin_puts_a_profile_and_declared_attributes_obey_their_rules() {
    let app = spawn_app_with(Options {
        settings: Some(Box::new(|s| {
            s.profiles.default_visibility = "public".into();
            s.profiles.attributes = toml::from_str::<keyward_config::ProfileSettings>(
                "[[attributes]]\nname = \"skills\"\ntype = \"string-list\"\nview = \"public\"\n\
                 [[attributes]]\nname = \"rate\"\ntype = \"number\"\nview = \"users\"\n\
                 [[attributes]]\nname = \"tier\"\ntype = \"string\"\nedit = \"admin\"\nview = \"admin\"\n",
            )
            .unwrap()
            .attributes;
        })),
        ..Options::default()
    })
    .await;
    let (eve, eve_token) = user(&app, "eve@example.com", "eve").await;
    let (_, fay_token) = user(&app, "fay@example.com", "fay").await;
    let (_, root) = admin(&app).await;
    let path = format!("/v1/users/{eve}");

    let body = json!({"username": "eve", "display_name": "Eve", "attributes": {"skills": ["rust"], "rate": 40}});
    let (s, b) = problem(put(&app, &path, &fay_token, body.clone()).await).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    let me: Value = put(&app, &path, &eve_token, body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["attributes"], json!({"skills": ["rust"], "rate": 40}));
    let (s, b) = problem(
        patch(
            &app,
            "/v1/users/me",
            &eve_token,
            json!({"attributes": {"tier": "gold"}}),
        )
        .await,
    )
    .await;
    assert_eq!(
        (s, b["errors"][0]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("read_only"))
    );
    let r = put(
        &app,
        &path,
        &root,
        json!({"username": "eve", "attributes": {"tier": "gold"}}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let by_admin: Value = r.json().await.unwrap();
    assert_eq!(
        by_admin["display_name"],
        Value::Null,
        "PUT clears what it does not name"
    );

    // Each audience sees its attributes.
    let anon: Value = get_as(&app, &path, None).await.json().await.unwrap();
    assert_eq!(anon["attributes"], json!({"skills": ["rust"]}));
    let fay: Value = get_as(&app, &path, Some(&fay_token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(fay["attributes"], json!({"skills": ["rust"], "rate": 40}));
    let adm: Value = get_as(&app, &path, Some(&root)).await.json().await.unwrap();
    assert_eq!(adm["attributes"]["tier"], "gold");
    assert!(app
        .get_bearer("/v1/users/me", &eve_token)
        .await
        .json::<Value>()
        .await
        .unwrap()["attributes"]
        .get("tier")
        .is_none());
}

#[actix_web::test]
async fn settings_merge_and_refuse_more_than_16_kib() {
    let app = spawn_app().await;
    let (_, token) = user(&app, "gus@example.com", "gus").await;
    let r = patch(
        &app,
        "/v1/users/me/settings",
        &token,
        json!({"theme": "dark", "tabs": {"a": 1, "b": 2}}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    patch(
        &app,
        "/v1/users/me/settings",
        &token,
        json!({"tabs": {"a": null}}),
    )
    .await;
    let s: Value = app
        .get_bearer("/v1/users/me/settings", &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(s, json!({"theme": "dark", "tabs": {"b": 2}}));
    let big = json!({"blob": "x".repeat(15 * 1024)});
    assert_eq!(
        patch(&app, "/v1/users/me/settings", &token, big.clone())
            .await
            .status(),
        StatusCode::OK
    );
    let (s, b) = problem(
        patch(
            &app,
            "/v1/users/me/settings",
            &token,
            json!({"more": "y".repeat(2048)}),
        )
        .await,
    )
    .await;
    assert_eq!(
        (s, b["errors"][0]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("too_large"))
    );
    let kept: Value = app
        .get_bearer("/v1/users/me/settings", &token)
        .await
        .json()
        .await
        .unwrap();
    assert!(kept.get("more").is_none());
}

#[actix_web::test]
async fn activity_pages_the_own_history_and_export_holds_everything() {
    let app = spawn_app().await;
    let (_, token) = user(&app, "hal@example.com", "hal").await;
    for _ in 0..3 {
        app.login_ok("hal@example.com", PASSWORD).await;
    }
    patch(&app, "/v1/users/me", &token, json!({"display_name": "Hal"})).await;
    patch(
        &app,
        "/v1/users/me/settings",
        &token,
        json!({"theme": "dark"}),
    )
    .await;

    let page: Value = app
        .get_bearer("/v1/users/me/activity?limit=3", &token)
        .await
        .json()
        .await
        .unwrap();
    let kinds: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["profile.updated", "user.logged_in", "user.logged_in"]
    );
    assert!(page["items"][1]["ip"]
        .as_str()
        .is_some_and(|ip| ip.starts_with("127.")));
    let cursor = page["next_cursor"].as_str().unwrap();
    let rest: Value = app
        .get_bearer(
            &format!("/v1/users/me/activity?limit=3&cursor={cursor}"),
            &token,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(rest["items"].as_array().unwrap().len(), 2, "{rest}");
    assert!(rest["next_cursor"].is_null());
    for bad in ["cursor=zz", "limit=0", "limit=101"] {
        let r = app
            .get_bearer(&format!("/v1/users/me/activity?{bad}"), &token)
            .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
    }

    let r = app.get_bearer("/v1/users/me/export", &token).await;
    assert!(r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .contains("attachment"));
    let export: Value = r.json().await.unwrap();
    assert_eq!(export["account"]["email"], "hal@example.com");
    assert_eq!(export["account"]["display_name"], "Hal");
    assert_eq!(export["settings"], json!({"theme": "dark"}));
    assert_eq!(export["sessions"].as_array().unwrap().len(), 4);
    assert_eq!(export["activity"].as_array().unwrap().len(), 5);
}

#[actix_web::test]
async fn self_deletion_ends_sessions_a_login_cancels_it_and_after_the_grace_the_account_is_erased()
{
    let app = spawn_app().await;
    let (ivy, token) = user(&app, "ivy@example.com", "ivy").await;
    let first_session = app
        .get_bearer("/v1/sessions", &token)
        .await
        .json::<Value>()
        .await
        .unwrap()[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    patch(
        &app,
        "/v1/users/me",
        &token,
        json!({"visibility": "public", "display_name": "Ivy"}),
    )
    .await;
    let delete = |token: String, password: &'static str| {
        let app = &app;
        async move {
            app.client
                .delete(app.url("/v1/users/me"))
                .bearer_auth(token)
                .json(&json!({"current_password": password}))
                .send()
                .await
                .unwrap()
        }
    };
    let (s, b) = problem(delete(token.clone(), "wrong password here").await).await;
    assert_eq!(
        (s, b["errors"][0]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("current_password"))
    );

    let r = delete(token.clone(), PASSWORD).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert!(r.json::<Value>().await.unwrap()["erase_at"].is_string());
    assert_eq!(
        app.get_bearer("/v1/users/me", &token).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get_as(&app, &format!("/v1/users/{ivy}"), None)
            .await
            .status(),
        StatusCode::NOT_FOUND
    );

    // Logging in during the grace period cancels the deletion.
    let token = app.login_ok("ivy@example.com", PASSWORD).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let me: Value = app
        .get_bearer("/v1/users/me", &token)
        .await
        .json()
        .await
        .unwrap();
    assert!(me["deletion_scheduled_for"].is_null());
    assert_eq!(
        get_as(&app, &format!("/v1/users/{ivy}"), None)
            .await
            .status(),
        StatusCode::OK
    );

    // Again, and this time the grace period passes.
    assert_eq!(delete(token, PASSWORD).await.status(), StatusCode::ACCEPTED);
    app.advance(8 * 24 * 3600);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while app.events_of_type("user.deleted").await.is_empty() {
        assert!(std::time::Instant::now() < deadline, "not erased");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        app.events_of_type("user.deleted").await[0]["data"],
        json!({"user_id": ivy})
    );
    assert_eq!(
        app.login("ivy@example.com", PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let store = &app.node.contexts.store;
    let id = keyward_messages::UserId(uuid::Uuid::parse_str(&ivy).unwrap());
    assert!(store.users().by_id(id).await.unwrap().is_none());
    assert!(store.users().roles_of(id).await.unwrap().is_empty());
    assert!(store.profiles().get(id).await.unwrap().is_none());
    assert!(store.profiles().settings(id).await.unwrap().is_empty());
    let sid = keyward_messages::SessionId(uuid::Uuid::parse_str(&first_session).unwrap());
    assert!(
        store.sessions().by_id(sid).await.unwrap().is_none(),
        "sessions are erased too"
    );
    // The address is free again.
    assert_eq!(
        app.register("ivy@example.com", PASSWORD, Some("ivy2"))
            .await
            .status(),
        StatusCode::ACCEPTED
    );
}

#[actix_web::test]
#[ignore = "needs RabbitMQ (scripts/services.sh postgres rabbitmq -- cargo test --test api -- --include-ignored)"]
async fn an_edit_on_one_node_is_seen_on_another_within_a_second() {
    let _broker = crate::helpers::broker_lock().await;
    let a = spawn_app_with(Options {
        amqp: true,
        ..Options::default()
    })
    .await;
    let b = a.spawn_peer().await;
    let (_, token) = user(&a, "jan@example.com", "jan").await;
    let me_on_b = || async {
        a.client
            .get(format!("http://{}/v1/users/me", b.public_addr))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    };
    // B reads the profile and keeps it (for up to 30 s without a message).
    assert_eq!(me_on_b().await["display_name"], Value::Null);
    let r = patch(&a, "/v1/users/me", &token, json!({"display_name": "Jan"})).await;
    assert_eq!(r.status(), StatusCode::OK);
    let started = std::time::Instant::now();
    while me_on_b().await["display_name"] != "Jan" {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(1),
            "B still shows the old profile after a second"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    b.stop().await;
}

#[actix_web::test]
async fn the_upgrade_rekeys_usernames_by_lookalike_and_keeps_every_account_its_name() {
    use sea_orm::sea_query::{Alias, Query};
    use sea_orm::{ConnectionTrait, Database};

    let dir = tempfile::tempdir().unwrap();
    let pg = crate::helpers::TestDatabase::create().await;
    let url = match &pg {
        Some((_, url)) => url.clone(),
        None => format!("sqlite://{}/keyward.db?mode=rwc", dir.path().display()),
    };
    // A database as the release before lookalike-proof usernames left it.
    let store = keyward_storage::Store::connect(&url).await.unwrap();
    assert_eq!(
        store
            .migrate_through("m0004_canonical_email")
            .await
            .unwrap(),
        4
    );
    let db = Database::connect(url.clone()).await.unwrap();
    let backend = db.get_database_backend();
    let mut ids = Vec::new();
    for (i, name) in ["bob", "b0b", "Coco"].into_iter().enumerate() {
        let id = uuid::Uuid::now_v7();
        let at = chrono::Utc::now() + chrono::Duration::seconds(i as i64);
        let mut insert = Query::insert();
        insert.into_table(Alias::new("users")).columns(
            [
                "id",
                "email",
                "email_normalized",
                "username",
                "username_normalized",
                "password_hash",
                "email_verified",
                "locale",
                "blocked",
                "created_at",
                "updated_at",
            ]
            .map(Alias::new),
        );
        let email = format!("u{i}@example.com");
        insert
            .values([
                id.into(),
                email.clone().into(),
                email.into(),
                name.into(),
                name.to_lowercase().into(),
                "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA".into(),
                true.into(),
                "en".into(),
                false.into(),
                at.into(),
                at.into(),
            ])
            .unwrap();
        db.execute_raw(backend.build(&insert)).await.unwrap();
        ids.push(keyward_messages::UserId(id));
    }

    assert_eq!(store.migrate().await.unwrap(), 17, "m0005 to m0021 ran");

    let name = |s: &str| keyward_messages::Username::parse("username", s).unwrap();
    let holder = |s: &'static str| {
        let store = store.clone();
        async move {
            store
                .users()
                .by_username(&name(s))
                .await
                .unwrap()
                .map(|u| u.id)
        }
    };
    // Both of two names that now read alike keep their account and their login.
    assert_eq!(holder("bob").await, Some(ids[0]));
    assert_eq!(holder("B0B").await, Some(ids[1]));
    assert_eq!(holder("COCO").await, Some(ids[2]));
    // And no third lookalike can join them (the repository then leaves the account nameless).
    let joined = store
        .users()
        .set_username(ids[2], Some(&name("BOB")), chrono::Utc::now())
        .await
        .unwrap();
    assert!(!joined, "a third account took a name that reads like bob");
}

#[actix_web::test]
async fn search_finds_people_as_they_type_in_either_script_and_only_those_the_caller_may_see() {
    let app = spawn_app_with(Options {
        settings: Some(Box::new(|s| {
            s.profiles.default_visibility = "public".into()
        })),
        ..Options::default()
    })
    .await;
    let mut people = Vec::new();
    for (email, name, edit) in [
        (
            "petr@example.com",
            "petr_ivanov",
            json!({"display_name": "Пётр Иванов"}),
        ),
        (
            "elkin@example.com",
            "elkin",
            json!({"display_name": "Ivan Elkin"}),
        ),
        (
            "hidden@example.com",
            "petra_hidden",
            json!({"visibility": "private"}),
        ),
        (
            "member@example.com",
            "petrov_members",
            json!({"visibility": "users"}),
        ),
    ] {
        let (id, token) = user(&app, email, name).await;
        assert_eq!(
            patch(&app, "/v1/users/me", &token, edit).await.status(),
            StatusCode::OK
        );
        people.push((id, token));
    }
    let (petr, elkin_token) = (people[0].0.clone(), people[1].1.clone());
    let names = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["username"].as_str().unwrap().to_owned())
            .collect()
    };
    let search = |q: &str, token: Option<&str>| {
        let path = format!("/v1/users/search?q={}", urlencoding(q));
        let app = &app;
        let token = token.map(str::to_owned);
        async move {
            get_as(app, &path, token.as_deref())
                .await
                .json::<Value>()
                .await
                .unwrap()
        }
    };

    // ё/е and case do not matter; a prefix finds while typing; Latin finds Cyrillic and back.
    assert_eq!(names(&search("ПЕТР", None).await)[0], "petr_ivanov");
    assert_eq!(names(&search("пёт", None).await)[0], "petr_ivanov");
    assert!(names(&search("petr", None).await).contains(&"petr_ivanov".to_owned()));
    assert_eq!(names(&search("ёлкин", None).await), ["elkin"]);
    // A typo in a longer name.
    assert!(names(&search("Ivonov", None).await).contains(&"petr_ivanov".to_owned()));
    // Visibility: private never; `users` only for signed-in callers.
    let anon = names(&search("petr", None).await);
    assert!(
        !anon
            .iter()
            .any(|n| n.contains("hidden") || n.contains("members")),
        "{anon:?}"
    );
    let signed = names(&search("petr", Some(&elkin_token)).await);
    assert!(
        signed.contains(&"petrov_members".to_owned())
            && !signed.iter().any(|n| n.contains("hidden"))
    );

    // Pages: no gaps, no repeats; a foreign cursor is a 400.
    let first: Value = get_as(
        &app,
        "/v1/users/search?nickname=p&limit=1",
        Some(&elkin_token),
    )
    .await
    .json()
    .await
    .unwrap();
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let second: Value = get_as(
        &app,
        &format!("/v1/users/search?q=p&limit=1&cursor={cursor}"),
        Some(&elkin_token),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_ne!(names(&first), names(&second));
    let r = get_as(
        &app,
        &format!("/v1/users/search?q=elkin&cursor={cursor}"),
        None,
    )
    .await;
    assert_eq!(problem(r).await.1["errors"][0]["field"], "cursor");
    for bad in [
        "",
        "q=",
        "q=%20%20",
        &format!("q={}", "x".repeat(65)),
        "q=a&limit=0",
        "q=a&limit=51",
    ] {
        let r = get_as(&app, &format!("/v1/users/search?{bad}"), None).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
    }

    // Blocking or deleting takes a profile out of search; a rename is found by its new name.
    let (_, root) = admin(&app).await;
    let r = app
        .post_bearer(
            &format!("/v1/admin/users/{petr}/block"),
            &root,
            Some(json!({})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(!names(&search("petr", None).await).contains(&"petr_ivanov".to_owned()));
    patch(
        &app,
        "/v1/users/me",
        &elkin_token,
        json!({"username": "elkin_new"}),
    )
    .await;
    assert_eq!(names(&search("elkin_n", None).await), ["elkin_new"]);
}

/// Percent-encodes a query value.
fn urlencoding(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
