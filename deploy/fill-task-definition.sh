#!/usr/bin/env bash
# Prints task-definition.json with its placeholders filled in for one AWS account:
#
#   REGION, ACCOUNT_ID                      -> AWS_REGION, ACCOUNT_ID (or the caller's account)
#   ...:secret:messenger/rds-XXXXXX         -> RDS_SECRET_ARN (full ARN of the secret)
#   ...:secret:messenger/jwt-XXXXXX         -> JWT_SECRET_ARN (full ARN of the secret)
#   the RDS_ENDPOINT environment value      -> RDS_ENDPOINT
#   REGION, ACCOUNT_ID in other environment values (the attachments' S3_BUCKET and S3_REGION)
#
# The committed file keeps only placeholders (a test makes sure of it): account numbers
# and ARNs come from the deploy workflow's repository variables, or from your shell when
# registering the first revision by hand (docs/deployment.md). The container image is
# left alone; amazon-ecs-render-task-definition (or --image) sets it.
#
#   AWS_REGION=eu-west-1 RDS_ENDPOINT=... RDS_SECRET_ARN=... JWT_SECRET_ARN=... \
#     deploy/fill-task-definition.sh [task-definition.json] [--image URI] > filled.json
set -euo pipefail

input=task-definition.json
image=""
while [ $# -gt 0 ]; do
    case "$1" in
        --image) image="$2"; shift 2 ;;
        *) input="$1"; shift ;;
    esac
done

missing=0
for name in AWS_REGION RDS_ENDPOINT RDS_SECRET_ARN JWT_SECRET_ARN; do
    if [ -z "${!name:-}" ]; then
        echo "fill-task-definition: $name is not set" >&2
        missing=1
    fi
done
[ "$missing" = 0 ] || exit 2

account="${ACCOUNT_ID:-}"
if [ -z "$account" ]; then
    account="$(aws sts get-caller-identity --query Account --output text)"
fi

filled="$(
    jq --arg account "$account" --arg region "$AWS_REGION" \
        --arg rds_secret "$RDS_SECRET_ARN" --arg jwt_secret "$JWT_SECRET_ARN" \
        --arg rds_endpoint "$RDS_ENDPOINT" --arg image "$image" '
        def fill: gsub("ACCOUNT_ID"; $account) | gsub("REGION"; $region);
        .executionRoleArn |= fill
        | .taskRoleArn |= fill
        | .containerDefinitions |= map(
            .logConfiguration.options["awslogs-region"] |= fill
            | (if $image != "" then .image = $image else . end)
            | .environment |= map(if .name == "RDS_ENDPOINT" then .value = $rds_endpoint
                                   else .value |= fill end)
            # Secrets first swap the whole secret ARN (its random suffix cannot be
            # derived), keeping what follows it (:json-key:version-stage:version-id).
            | .secrets |= map(.valueFrom |= (
                sub("^arn:aws:secretsmanager:REGION:ACCOUNT_ID:secret:messenger/rds-XXXXXX"; $rds_secret)
                | sub("^arn:aws:secretsmanager:REGION:ACCOUNT_ID:secret:messenger/jwt-XXXXXX"; $jwt_secret)
                | fill)))
    ' "$input"
)"

# Anything still a placeholder would only fail later, and less clearly, in ECS.
leftover="$(jq -r '.executionRoleArn, .taskRoleArn, (.containerDefinitions[]
        | .logConfiguration.options["awslogs-region"], .environment[].value, .secrets[].valueFrom)' \
    <<<"$filled" | grep -E 'ACCOUNT_ID|REGION|XXXXXX' || true)"
if [ -n "$leftover" ]; then
    echo "fill-task-definition: placeholders left after filling in:" >&2
    echo "$leftover" >&2
    exit 1
fi
printf '%s\n' "$filled"
