import { create } from '@bufbuild/protobuf';
import type { AccessBinding as DomainBinding } from '../../domain/access.js';
import { AccessBindingAction, AccessBindingSchema, type AccessBinding } from '../../gen/yandex/cloud/access/access_pb.js';
import type { BindingInput, DeltaInput } from '../../services/access/access-service.js';

// yandex.cloud.access messages ⇄ the access service's inputs and domain bindings.

export function bindingToPb(b: DomainBinding): AccessBinding {
  return create(AccessBindingSchema, { roleId: b.roleId, subject: { id: b.subject.id, type: b.subject.type } });
}

/** The validator has checked that subject is present; an absent one reads as empty and fails the domain check. */
export function bindingFromPb(b: AccessBinding | undefined): BindingInput {
  return { roleId: b?.roleId ?? '', subject: { type: b?.subject?.type ?? '', id: b?.subject?.id ?? '' } };
}

export function actionFromPb(a: AccessBindingAction): DeltaInput['action'] {
  return a === AccessBindingAction.ADD ? 'ADD' : a === AccessBindingAction.REMOVE ? 'REMOVE' : 'UNSPECIFIED';
}
