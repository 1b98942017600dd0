-- The chat service's own schema. Accounts live in AuthStack; here they are only ids (the `sub`
-- of access tokens) with the user name AuthStack reported when they joined.
CREATE TABLE chat.chats (
    id         uuid PRIMARY KEY,
    name       text NOT NULL,
    created_by uuid NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE chat.members (
    chat_id    uuid NOT NULL REFERENCES chat.chats (id) ON DELETE CASCADE,
    account_id uuid NOT NULL,
    username   text NOT NULL,
    joined_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (chat_id, account_id)
);
CREATE INDEX members_by_account ON chat.members (account_id);

CREATE TABLE chat.messages (
    id         bigserial PRIMARY KEY,
    chat_id    uuid NOT NULL REFERENCES chat.chats (id) ON DELETE CASCADE,
    author_id  uuid NOT NULL,
    author     text NOT NULL,
    body       text NOT NULL,
    sent_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX messages_by_chat ON chat.messages (chat_id, id);
