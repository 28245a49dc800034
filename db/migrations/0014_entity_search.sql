-- Finding entities by name or id (`hypograph entity search`): an FTS5 index with the trigram
-- tokenizer over each entity's key and name, so any substring of three or more characters
-- (an id prefix, a word of a name) is an index lookup. External content: the text lives in
-- `entities`; triggers keep the index in step.
CREATE VIRTUAL TABLE entity_search USING fts5(
    key, name, content = 'entities', content_rowid = 'id', tokenize = 'trigram'
);
INSERT INTO entity_search(rowid, key, name) SELECT id, key, name FROM entities;

CREATE TRIGGER entity_search_insert AFTER INSERT ON entities BEGIN
    INSERT INTO entity_search(rowid, key, name) VALUES (new.id, new.key, new.name);
END;
CREATE TRIGGER entity_search_update AFTER UPDATE OF key, name ON entities BEGIN
    INSERT INTO entity_search(entity_search, rowid, key, name)
        VALUES ('delete', old.id, old.key, old.name);
    INSERT INTO entity_search(rowid, key, name) VALUES (new.id, new.key, new.name);
END;
CREATE TRIGGER entity_search_delete AFTER DELETE ON entities BEGIN
    INSERT INTO entity_search(entity_search, rowid, key, name)
        VALUES ('delete', old.id, old.key, old.name);
END;
