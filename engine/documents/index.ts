// The registry of document types a host can run.

import type { DocumentType } from '../document.ts';
import { cardTable } from './card-table.ts';
import { chat } from './chat.ts';
import { counter } from './counter.ts';
import { poll } from './poll.ts';

export const documentTypes: ReadonlyMap<string, DocumentType> = new Map<string, DocumentType>([
  [counter.name, counter],
  [chat.name, chat],
  [cardTable.name, cardTable],
  [poll.name, poll],
]);

/** The document type named `name`, or undefined (callers answer `unknown_document_type`). */
export function findDocumentType(name: string): DocumentType | undefined {
  return documentTypes.get(name);
}

export { cardTable, chat, counter, poll };
