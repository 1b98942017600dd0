-- Every chat, newest first (an administrator's list, `db::list_chats` without an account): the
-- first page read from an index instead of sorting every chat.
CREATE INDEX chats_by_creation ON chat.chats (created_at DESC, id);
