//! The OpenAPI 3 document of the admin API, served at `/api/v1/openapi.json`
//! (no token needed: it describes, it does not reveal). The operations it marks
//! `security: []` are exactly [`super::PUBLIC`].

use axum::Json;
use axum::response::IntoResponse;
use serde_json::{Value, json};

/// `GET /api/v1/openapi.json`.
pub(super) async fn document() -> impl IntoResponse {
    Json(spec())
}

fn error_responses(codes: &[&str]) -> Value {
    let mut out = serde_json::Map::new();
    for code in codes {
        let description = match *code {
            "400" => "The request is malformed",
            "401" => "No valid token",
            "403" => "Not an administrator",
            "404" => "No such thing",
            "409" => "It exists already, or is in use",
            "422" => "Refused: the value is invalid",
            "429" => "Too many attempts",
            "503" => "Temporarily unavailable",
            _ => "Error",
        };
        out.insert(
            (*code).to_string(),
            json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}),
        );
    }
    Value::Object(out)
}

fn with(mut base: Value, extra: Value) -> Value {
    if let (Some(b), Value::Object(e)) = (base.as_object_mut(), extra) {
        b.extend(e);
    }
    base
}

fn ok(status: &str, description: &str, schema: Option<Value>, errors: &[&str]) -> Value {
    let body = match schema {
        Some(s) => {
            json!({status: {"description": description, "content": {"application/json": {"schema": s}}}})
        }
        None => json!({status: {"description": description}}),
    };
    with(body, error_responses(errors))
}

fn reference(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn array(name: &str) -> Value {
    json!({"type": "array", "items": reference(name)})
}

fn path_param(name: &str, schema: Value) -> Value {
    json!({"name": name, "in": "path", "required": true, "schema": schema})
}

fn body(name: &str) -> Value {
    json!({"required": true, "content": {"application/json": {"schema": reference(name)}}})
}

/// The whole document.
pub fn spec() -> Value {
    let string = json!({"type": "string"});
    let id = json!({"type": "integer", "format": "int64", "minimum": 0});
    let auth_errors: &[&str] = &["401", "503"];
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Postern admin API",
            "version": "1.0.0",
            "description": "Administer a Postern mail server. Log in with POST /login, then send Authorization: Bearer TOKEN."
        },
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearer": []}],
        "paths": {
            "/login": {"post": {
                "operationId": "login",
                "security": [],
                "requestBody": body("Login"),
                "responses": ok("200", "A token", Some(reference("Token")), &["400", "401", "429", "503"])
            }},
            "/logout": {"post": {
                "operationId": "logout",
                "responses": ok("204", "The token of this request is no longer valid", None, auth_errors)
            }},
            "/users": {
                "get": {"operationId": "listUsers", "responses": ok("200", "The accounts", Some(array("User")), auth_errors)},
                "post": {"operationId": "createUser", "requestBody": body("NewUser"),
                    "responses": ok("201", "Created (with the generated password if none was given)", Some(reference("CreatedUser")), &["400", "401", "409", "422", "503"])}
            },
            "/users/{email}": {
                "parameters": [path_param("email", string.clone())],
                "patch": {"operationId": "updateUser", "requestBody": body("UserChange"),
                    "responses": ok("200", "The account", Some(reference("User")), &["400", "401", "404", "409", "422", "503"])},
                "delete": {"operationId": "deleteUser", "responses": ok("204", "Deleted with its mail", None, &["401", "404", "409", "422", "503"])}
            },
            "/domains": {
                "get": {"operationId": "listDomains", "responses": ok("200", "The domains", Some(array("Domain")), auth_errors)},
                "post": {"operationId": "createDomain", "requestBody": body("Domain"),
                    "responses": ok("201", "Created, with DKIM keys", Some(reference("Domain")), &["400", "401", "409", "422", "503"])}
            },
            "/domains/{name}": {
                "parameters": [path_param("name", string.clone())],
                "delete": {"operationId": "deleteDomain", "responses": ok("204", "Deleted", None, &["401", "404", "409", "422", "503"])}
            },
            "/domains/{name}/dns": {
                "parameters": [path_param("name", string.clone())],
                "get": {"operationId": "checkDns", "responses": ok("200", "Each record the domain needs, with the live verdict", Some(array("DnsCheck")), &["401", "422", "503"])}
            },
            "/domains/{name}/dkim": {
                "parameters": [path_param("name", string.clone())],
                "get": {"operationId": "listDkim", "responses": ok("200", "The domain's keys", Some(array("DkimKey")), &["401", "404", "422", "503"])}
            },
            "/domains/{name}/dkim/rotate": {
                "parameters": [path_param("name", string.clone())],
                "post": {"operationId": "rotateDkim", "responses": ok("201", "New inactive keys added", Some(array("DkimKey")), &["401", "404", "422", "503"])}
            },
            "/domains/{name}/dkim/{selector}": {
                "parameters": [path_param("name", string.clone()), path_param("selector", string.clone())],
                "delete": {"operationId": "retireDkim", "responses": ok("200", "Retired; the remaining keys", Some(array("DkimKey")), &["401", "404", "422", "503"])}
            },
            "/domains/{name}/dkim/{selector}/activate": {
                "parameters": [path_param("name", string.clone()), path_param("selector", string.clone())],
                "post": {"operationId": "activateDkim", "responses": ok("200", "Activated; the keys", Some(array("DkimKey")), &["401", "404", "422", "503"])}
            },
            "/aliases": {
                "get": {"operationId": "listAliases", "responses": ok("200", "The aliases", Some(array("Alias")), auth_errors)},
                "post": {"operationId": "createAlias", "requestBody": body("Alias"),
                    "responses": ok("201", "Created", Some(reference("Alias")), &["400", "401", "409", "422", "503"])}
            },
            "/aliases/{address}": {
                "parameters": [path_param("address", string.clone())],
                "put": {"operationId": "replaceAlias", "requestBody": body("AliasTargets"),
                    "responses": ok("200", "The alias", Some(reference("Alias")), &["400", "401", "404", "409", "422", "503"])},
                "delete": {"operationId": "deleteAlias", "responses": ok("204", "Deleted", None, &["401", "404", "422", "503"])}
            },
            "/apps": {
                "get": {"operationId": "listApps", "responses": ok("200", "The apps", Some(array("App")), auth_errors)},
                "post": {"operationId": "createApp", "requestBody": body("NewApp"),
                    "responses": ok("201", "Created", Some(reference("App")), &["400", "401", "404", "409", "422", "503"])}
            },
            "/apps/{name}": {
                "parameters": [path_param("name", string.clone())],
                "patch": {"operationId": "updateApp", "requestBody": body("AppChange"),
                    "responses": ok("200", "The app", Some(reference("App")), &["400", "401", "404", "409", "422", "503"])},
                "delete": {"operationId": "deleteApp", "responses": ok("204", "Removed", None, &["401", "404", "503"])}
            },
            "/queue": {
                "get": {"operationId": "listQueue", "responses": ok("200", "The outbound queue", Some(array("Queued")), auth_errors)}
            },
            "/queue/{id}": {
                "parameters": [path_param("id", id.clone())],
                "delete": {"operationId": "dropQueued", "responses": ok("204", "Dropped (its sender is not told)", None, &["400", "401", "404", "503"])}
            },
            "/queue/{id}/retry": {
                "parameters": [path_param("id", id.clone())],
                "post": {"operationId": "retryQueued", "responses": ok("200", "Due now", Some(reference("Queued")), &["400", "401", "404", "503"])}
            },
            "/log": {
                "get": {
                    "operationId": "activityLog",
                    "parameters": [
                        {"name": "since", "in": "query", "schema": {"type": "string", "format": "date-time"}},
                        {"name": "until", "in": "query", "schema": {"type": "string", "format": "date-time"}},
                        {"name": "actor", "in": "query", "schema": string.clone()},
                        {"name": "action", "in": "query", "schema": string.clone()},
                        {"name": "ip", "in": "query", "schema": {"type": "string"}},
                        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}}
                    ],
                    "responses": ok("200", "The newest matching entries, oldest first", Some(array("LogEntry")), &["400", "401", "503"])
                }
            },
            "/certificates": {
                "get": {"operationId": "listCertificates", "responses": ok("200", "The certificates served, with their expiry", Some(array("Certificate")), auth_errors)}
            },
            "/config": {
                "get": {"operationId": "effectiveConfig", "responses": ok("200", "The configuration in effect (read-only)", Some(json!({"type": "object"})), auth_errors)}
            },
            "/openapi.json": {
                "get": {"operationId": "openapi", "security": [], "responses": {"200": {"description": "This document", "content": {"application/json": {"schema": {"type": "object"}}}}}}
            }
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["code", "message"], "properties": {"code": string.clone(), "message": string.clone()}},
                "Login": {"type": "object", "required": ["email", "password"], "properties": {"email": string.clone(), "password": string.clone()}},
                "Token": {"type": "object", "required": ["token", "expires_at"], "properties": {"token": string.clone(), "expires_at": {"type": "string", "format": "date-time"}}},
                "User": {"type": "object", "required": ["email", "quota_bytes", "used_bytes", "admin"], "properties": {
                    "email": string.clone(), "quota_bytes": id.clone(), "used_bytes": id.clone(), "admin": {"type": "boolean"}}},
                "CreatedUser": {"allOf": [reference("User"), {"type": "object", "properties": {"password": string.clone()}}]},
                "NewUser": {"type": "object", "required": ["email"], "additionalProperties": false, "properties": {
                    "email": string.clone(), "password": string.clone(), "quota_bytes": id.clone(), "admin": {"type": "boolean"}}},
                "UserChange": {"type": "object", "additionalProperties": false, "properties": {
                    "password": string.clone(), "quota_bytes": id.clone(), "admin": {"type": "boolean"}}},
                "Domain": {"type": "object", "required": ["name"], "additionalProperties": false, "properties": {"name": string.clone()}},
                "Alias": {"type": "object", "required": ["address", "targets"], "additionalProperties": false, "properties": {
                    "address": string.clone(), "targets": {"type": "array", "items": string.clone()}}},
                "AliasTargets": {"type": "object", "required": ["targets"], "additionalProperties": false, "properties": {
                    "targets": {"type": "array", "items": string.clone()}}},
                "App": {"type": "object", "required": ["name", "host", "upstream"], "properties": {
                    "name": string.clone(), "host": string.clone(), "upstream": string.clone()}},
                "AppChange": {"type": "object", "additionalProperties": false, "properties": {
                    "upstream": string.clone(), "host": string.clone()}},
                "Certificate": {"type": "object", "required": ["name", "path", "names", "issuer", "not_before", "not_after"], "properties": {
                    "name": string.clone(), "path": string.clone(), "names": {"type": "array", "items": string.clone()},
                    "issuer": string.clone(), "not_before": {"type": "string", "format": "date-time"},
                    "not_after": {"type": "string", "format": "date-time"}}},
                "NewApp": {"type": "object", "required": ["name", "upstream"], "additionalProperties": false, "properties": {
                    "name": string.clone(), "upstream": string.clone(), "host": string.clone()}},
                "DkimKey": {"type": "object", "required": ["selector", "algorithm", "active", "created", "record_name"], "properties": {
                    "selector": string.clone(), "algorithm": string.clone(), "active": {"type": "boolean"},
                    "created": {"type": "string", "format": "date-time"}, "record_name": string.clone(),
                    "record": {"type": "string", "nullable": true}}},
                "DnsCheck": {"type": "object", "required": ["name", "type", "expected", "verdict"], "properties": {
                    "name": string.clone(), "type": string.clone(), "expected": string.clone(),
                    "verdict": {"type": "string", "enum": ["ok", "missing", "wrong", "unknown"]},
                    "found": {"type": "array", "nullable": true, "items": string.clone()}}},
                "Queued": {"type": "object", "required": ["id", "sender", "size", "created", "next_attempt", "attempts", "recipients"], "properties": {
                    "id": id.clone(), "sender": string.clone(), "size": id.clone(),
                    "created": {"type": "string", "format": "date-time"}, "next_attempt": {"type": "string", "format": "date-time"},
                    "attempts": id.clone(),
                    "recipients": {"type": "array", "items": {"type": "object", "required": ["address", "state"], "properties": {
                        "address": string.clone(), "state": {"type": "string", "enum": ["pending", "delivered", "failed"]},
                        "detail": {"type": "string", "nullable": true}}}}}},
                "LogEntry": {"type": "object", "required": ["id", "time", "actor", "action", "detail"], "properties": {
                    "id": id.clone(), "time": {"type": "string", "format": "date-time"}, "actor": string.clone(),
                    "action": string.clone(), "ip": {"type": "string", "nullable": true}, "detail": string.clone()}}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_public_operations_are_the_routes_the_layer_lets_through() {
        let doc = spec();
        let mut public: Vec<(String, String)> = Vec::new();
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            for (method, op) in item.as_object().into_iter().flatten() {
                if op.get("security").is_some_and(|s| s == &json!([])) {
                    public.push((method.to_ascii_uppercase(), path.clone()));
                }
            }
        }
        public.sort();
        let mut expected: Vec<(String, String)> = super::super::PUBLIC
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        expected.sort();
        assert_eq!(public, expected);
    }
}
