//! The deployment files agree with each other and with the binary: the task definition
//! is valid JSON naming the container the deploy workflow renders, on the port the image
//! exposes, with a health check that runs the binary where the Dockerfile installs it;
//! secrets are placeholders, never real ARNs; logs are JSON for CloudWatch.
//!
//! No Docker engine or AWS account is needed: the files are read as text.

use std::{fs, path::Path};

use serde_json::Value;

use crate::integration_test;

const CONTAINER_PORT: u64 = 8000;

fn read(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn task_definition() -> Value {
    serde_json::from_str(&read("task-definition.json"))
        .unwrap_or_else(|e| panic!("task-definition.json is not valid JSON: {e}"))
}

/// The one container of the task definition.
fn container(task: &Value) -> &Value {
    let containers = task["containerDefinitions"]
        .as_array()
        .expect("containerDefinitions is an array");
    assert_eq!(containers.len(), 1, "the task runs exactly one container");
    &containers[0]
}

/// The Dockerfile's instructions: comments dropped, `\` continuations joined, each as
/// (INSTRUCTION, arguments).
fn dockerfile_instructions() -> Vec<(String, String)> {
    let text = read("Dockerfile");
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(start) => {
                current.push_str(start);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                let (instruction, arguments) = current
                    .split_once(char::is_whitespace)
                    .unwrap_or((&current, ""));
                instructions.push((
                    instruction.to_ascii_uppercase(),
                    arguments.trim().to_string(),
                ));
                current.clear();
            }
        }
    }
    assert!(current.is_empty(), "Dockerfile ends in a line continuation");
    instructions
}

/// Values of `key: value` lines in a workflow file (no YAML parser needed for these).
fn workflow_values(workflow: &str, key: &str) -> Vec<String> {
    let prefix = format!("{key}:");
    workflow
        .lines()
        .filter_map(|line| line.trim().strip_prefix(&prefix))
        .map(|value| {
            value
                .trim()
                .trim_matches(|c| c == '"' || c == '\'')
                .to_string()
        })
        .collect()
}

/// Whether `text` contains a run of 12 or more digits: what an AWS account id looks like.
fn has_account_number(text: &str) -> bool {
    let mut run = 0;
    for c in text.chars() {
        run = if c.is_ascii_digit() { run + 1 } else { 0 };
        if run >= 12 {
            return true;
        }
    }
    false
}

fn environment(container: &Value) -> Vec<(String, String)> {
    container["environment"]
        .as_array()
        .expect("environment is an array")
        .iter()
        .map(|variable| {
            (
                variable["name"]
                    .as_str()
                    .expect("environment name")
                    .to_string(),
                variable["value"]
                    .as_str()
                    .expect("environment values are strings")
                    .to_string(),
            )
        })
        .collect()
}

integration_test! {
    fn task_definition_is_valid_json_for_ec2_and_fargate() {
        let task = task_definition();
        assert_eq!(task["family"], "messenger");
        let compatibilities: Vec<&str> = task["requiresCompatibilities"]
            .as_array()
            .expect("requiresCompatibilities is an array")
            .iter()
            .map(|c| c.as_str().expect("compatibility is a string"))
            .collect();
        assert!(
            compatibilities.contains(&"EC2"),
            "{compatibilities:?} lacks EC2"
        );
        assert!(
            compatibilities.contains(&"FARGATE"),
            "{compatibilities:?} lacks FARGATE"
        );
        assert_eq!(
            task["networkMode"], "awsvpc",
            "Fargate needs awsvpc networking"
        );
        // Task-level cpu and memory are strings in the ECS API.
        assert!(task["cpu"].is_string() && task["memory"].is_string());
        assert_eq!(container(&task)["essential"], true);
    }

    fn container_name_matches_the_deploy_workflow() {
        let task = task_definition();
        let name = container(&task)["name"].as_str().expect("container name");
        let workflow = read(".github/workflows/deploy-to-ECR.yml");
        let names = workflow_values(&workflow, "container-name");
        assert_eq!(names, [name], "container-name in deploy-to-ECR.yml");
        assert!(
            workflow.contains("task-definition.json"),
            "the deploy workflow renders task-definition.json"
        );
    }

    fn port_mapping_matches_the_image_and_the_bind_address() {
        let task = task_definition();
        let container = container(&task);
        let ports = container["portMappings"].as_array().expect("portMappings");
        assert_eq!(ports.len(), 1);
        assert_eq!(ports[0]["containerPort"], CONTAINER_PORT);
        assert_eq!(ports[0]["protocol"], "tcp");

        let exposed: Vec<String> = dockerfile_instructions()
            .into_iter()
            .filter(|(instruction, _)| instruction == "EXPOSE")
            .map(|(_, arguments)| arguments)
            .collect();
        assert_eq!(
            exposed,
            [CONTAINER_PORT.to_string()],
            "EXPOSE in the Dockerfile"
        );

        let bind = environment(container)
            .into_iter()
            .find(|(name, _)| name == "BIND_ADDR")
            .map(|(_, value)| value)
            .expect("BIND_ADDR in the environment");
        assert_eq!(bind, format!("0.0.0.0:{CONTAINER_PORT}"));
    }

    fn health_check_runs_the_installed_binary() {
        let task = task_definition();
        let check = &container(&task)["healthCheck"];
        let command: Vec<&str> = check["command"]
            .as_array()
            .expect("healthCheck.command is an array")
            .iter()
            .map(|part| part.as_str().expect("command parts are strings"))
            .collect();
        let [form, binary, subcommand] = command[..] else {
            panic!("expected [\"CMD\", binary, \"healthcheck\"], got {command:?}");
        };
        assert_eq!(form, "CMD");
        assert_eq!(subcommand, "healthcheck");
        assert!(
            binary.starts_with('/') && binary.ends_with("/messenger"),
            "health check binary {binary:?} is not an absolute path to messenger"
        );
        for field in ["interval", "timeout", "retries", "startPeriod"] {
            assert!(check[field].is_u64(), "healthCheck.{field} is set");
        }

        let instructions = dockerfile_instructions();
        let installed = instructions.iter().any(|(instruction, arguments)| {
            instruction == "COPY"
                && arguments.starts_with("--from=")
                && arguments.split_whitespace().last() == Some(binary)
        });
        assert!(
            installed,
            "the Dockerfile does not COPY the binary to {binary}"
        );
        let docker_check = instructions
            .iter()
            .find(|(instruction, _)| instruction == "HEALTHCHECK")
            .map(|(_, arguments)| arguments.as_str())
            .expect("the Dockerfile has a HEALTHCHECK");
        assert!(
            docker_check.contains(&format!("\"{binary}\", \"healthcheck\"")),
            "the Dockerfile's HEALTHCHECK runs {binary} healthcheck: {docker_check}"
        );
    }

    fn graceful_shutdown_has_time_to_finish() {
        let task = task_definition();
        let stop = container(&task)["stopTimeout"]
            .as_u64()
            .expect("stopTimeout");
        // Streams end and in-flight requests finish within this; ECS allows at most 120 s.
        assert!((30..=120).contains(&stop), "stopTimeout {stop}");
    }

    fn every_secret_is_a_placeholder_arn() {
        let task = task_definition();
        let secrets = container(&task)["secrets"].as_array().expect("secrets");
        let mut names = Vec::new();
        for secret in secrets {
            let name = secret["name"].as_str().expect("secret name");
            let value = secret["valueFrom"].as_str().expect("secret valueFrom");
            assert!(
                value.starts_with("arn:aws:secretsmanager:") || value.starts_with("arn:aws:ssm:"),
                "{name}: {value} is not a Secrets Manager or Parameter Store ARN"
            );
            assert!(
                value.contains("REGION") && value.contains("ACCOUNT_ID"),
                "{name}: {value} is not a placeholder (REGION and ACCOUNT_ID)"
            );
            assert!(
                !has_account_number(value),
                "{name}: {value} holds an account number"
            );
            names.push(name);
        }
        for required in ["RDS_USER", "RDS_PASSWORD", "JWT_SECRET"] {
            assert!(
                names.contains(&required),
                "{required} is not among the secrets {names:?}"
            );
        }
        // Secrets never travel as plain environment variables.
        for (name, _) in environment(container(&task)) {
            assert!(
                !names.contains(&name.as_str()),
                "{name} is both a secret and plain environment"
            );
        }
        assert!(
            !has_account_number(&read("task-definition.json")),
            "task-definition.json holds what looks like a real account number"
        );
    }

    fn logs_go_to_cloudwatch_as_json() {
        let task = task_definition();
        let container = container(&task);
        assert_eq!(container["logConfiguration"]["logDriver"], "awslogs");
        let environment = environment(container);
        for (name, value) in [
            ("LOG_FORMAT", "json"),
            ("APP_ENV", "production"),
            ("TRUST_PROXY", "true"),
        ] {
            assert!(
                environment.iter().any(|(n, v)| n == name && v == value),
                "{name}={value} is not in the environment: {environment:?}"
            );
        }
    }

    fn dockerfile_builds_with_the_commands_ci_runs() {
        let runs: Vec<String> = dockerfile_instructions()
            .into_iter()
            .filter(|(instruction, _)| instruction == "RUN")
            .map(|(_, arguments)| arguments)
            .collect();
        for command in ["npm ci", "cargo build --release --locked"] {
            assert!(
                runs.iter().any(|run| run.contains(command)),
                "no RUN in the Dockerfile runs `{command}`: {runs:?}"
            );
        }
        let users: Vec<String> = dockerfile_instructions()
            .into_iter()
            .filter(|(instruction, _)| instruction == "USER")
            .map(|(_, arguments)| arguments)
            .collect();
        assert!(
            users
                .last()
                .is_some_and(|user| user != "root" && user != "0"),
            "the image runs as a non-root user: {users:?}"
        );
    }

    fn deploy_workflow_uses_oidc_and_the_ci_workflow() {
        let deploy = read(".github/workflows/deploy-to-ECR.yml");
        assert_eq!(
            workflow_values(&deploy, "role-to-assume"),
            ["${{ vars.AWS_DEPLOY_ROLE_ARN }}"]
        );
        assert_eq!(workflow_values(&deploy, "id-token"), ["write"]);
        assert_eq!(
            workflow_values(&deploy, "wait-for-service-stability"),
            ["true"]
        );
        assert!(
            !deploy.contains("aws-access-key-id") && !deploy.contains("aws-secret-access-key"),
            "the deploy workflow must not use long-lived access keys"
        );
        if deploy.contains("uses: ./.github/workflows/ci.yml") {
            let ci = read(".github/workflows/ci.yml");
            assert!(
                ci.contains("workflow_call:"),
                "ci.yml is called, so it needs `workflow_call:`"
            );
        }
    }
}
