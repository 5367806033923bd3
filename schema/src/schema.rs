//! The diesel schema, portable across SQLite and PostgreSQL (see `migrations/`).

diesel::table! {
    prefixes (project, prefix) {
        project -> Text,
        prefix -> Text,
        secret_hash -> Binary,
        secret -> Nullable<Binary>,
        op_nonce -> Nullable<Binary>,
        source_info -> Text,
        created_us -> BigInt,
        expires_us -> BigInt,
    }
}

diesel::table! {
    streams (project, id) {
        project -> Text,
        id -> Text,
        path -> Text,
        prefix -> Text,
        name -> Text,
        stream_type -> Text,
        content_type -> Text,
        descriptor -> Text,
        created_us -> BigInt,
        updated_us -> BigInt,
        next_index -> BigInt,
        terminal_index -> BigInt,
        terminated_us -> Nullable<BigInt>,
        sealed -> Bool,
        archival -> Text,
        archive -> Nullable<Text>,
        archive_error -> Nullable<Text>,
        purged -> Bool,
        next_sequence -> Nullable<BigInt>,
    }
}

diesel::table! {
    stream_tags (project, stream_id, key) {
        project -> Text,
        stream_id -> Text,
        key -> Text,
        value -> Text,
    }
}

diesel::table! {
    log_chunks (project, stream_id, first_index) {
        project -> Text,
        stream_id -> Text,
        first_index -> BigInt,
        count -> BigInt,
        bytes -> BigInt,
        end_sequence -> BigInt,
        data -> Binary,
    }
}

diesel::table! {
    archive_tasks (task_id) {
        task_id -> Text,
        project -> Text,
        stream_id -> Text,
        reason -> Text,
        due_us -> BigInt,
        attempt -> Integer,
        lease_id -> Nullable<Text>,
        lease_expires_us -> Nullable<BigInt>,
        last_error -> Nullable<Text>,
        created_us -> BigInt,
    }
}

diesel::table! {
    archive_deletions (project, stream_id) {
        project -> Text,
        stream_id -> Text,
        due_us -> BigInt,
        attempt -> Integer,
        last_error -> Nullable<Text>,
        created_us -> BigInt,
    }
}

diesel::table! {
    stream_sections (project, stream_id) {
        project -> Text,
        stream_id -> Text,
        fed_to -> BigInt,
        finished -> Bool,
        state -> Binary,
        updated_us -> BigInt,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    prefixes,
    streams,
    stream_tags,
    log_chunks,
    archive_tasks,
    archive_deletions,
    stream_sections
);
